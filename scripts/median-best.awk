# The median and the best of each label's values, for the benchmark scripts' summaries.
# Input: lines "LABEL VALUE" (the label may hold spaces; the value is the last field).
# Output, one line per label, sorted by label: "LABEL  median M, best B over N rounds", the
# numbers printed with -v fmt (default %.0f) and followed by -v unit.
# Usage: ... | awk -v fmt=%.2fx -v unit=" frames/s" -f scripts/median-best.awk
{
    value = $NF
    label = $0
    sub(/[ \t]+[^ \t]+[ \t]*$/, "", label)
    values[label, ++count[label]] = value
}
END {
    if (fmt == "") fmt = "%.0f"
    for (label in count) {
        n = count[label]
        for (i = 1; i <= n; i++) sorted[i] = values[label, i] + 0
        # Insertion sort: a handful of rounds.
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) {
                t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t
            }
        median = (n % 2) ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
        printf "%-16s median " fmt "%s, best " fmt "%s over %d rounds\n", label, median, unit, sorted[n], unit, n | "sort"
    }
}
