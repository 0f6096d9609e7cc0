//! Derived fields: values computed from another field of the record, declared in the dataflow's
//! `[derive]` section, e.g. `path = { from = "url", extract = "url_path" }`.
//!
//! Contract: `apply` runs after extraction and overwrites each target field. A missing or null
//! source leaves the target missing; a source that is not a string, or a URL the `url` crate
//! cannot parse, is an error (the record is dead-lettered as malformed). URLs may be absolute
//! (`https://host/a?b=c`) or absolute paths (`/a?b=c`). Query values are percent-decoded; the
//! first occurrence of a repeated parameter wins; an absent parameter (or host) makes the target
//! `null`, so it still groups (as `null`) where a missing field would be dead-lettered.

use super::Scalar;
use anyhow::{bail, Result};
use std::borrow::Cow;
use url::Url;

/// What to take from the source field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlPart {
    /// `url_path`: the path, e.g. `/products/42`.
    Path,
    /// `url_host`: the host name.
    Host,
    /// `query:NAME`: the value of query parameter NAME.
    Query(String),
}

impl UrlPart {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "url_path" => UrlPart::Path,
            "url_host" => UrlPart::Host,
            _ => match text.strip_prefix("query:") {
                Some(name) if !name.is_empty() => UrlPart::Query(name.to_string()),
                _ => {
                    bail!("unknown extraction `{text}` (expected url_path, url_host or query:NAME)")
                }
            },
        })
    }
}

/// One derived field: `fields[target] = part of fields[source]`.
#[derive(Clone, Debug)]
pub struct Derived {
    pub target: usize,
    pub source: usize,
    pub source_name: String,
    pub part: UrlPart,
}

/// Base for absolute paths; never shows up in a derived value.
const PATH_BASE: &str = "http://relative.invalid/";

/// Computes every derived field of a record; see the module contract.
pub fn apply(derived: &[Derived], fields: &mut [Option<Scalar<'_>>]) -> Result<(), String> {
    for d in derived {
        let value = match &fields[d.source] {
            None | Some(Scalar::Null) => None,
            Some(Scalar::Str(text)) => {
                let parsed = if text.starts_with('/') {
                    Url::parse(PATH_BASE).and_then(|base| base.join(text))
                } else {
                    Url::parse(text)
                };
                let url = parsed.map_err(|e| format!("`{}` is not a URL: {e}", d.source_name))?;
                Some(part_of(&url, &d.part).map_or(Scalar::Null, |v| Scalar::Str(Cow::Owned(v))))
            }
            Some(_) => return Err(format!("`{}` is not a string", d.source_name)),
        };
        fields[d.target] = value;
    }
    Ok(())
}

fn part_of(url: &Url, part: &UrlPart) -> Option<String> {
    match part {
        UrlPart::Path => Some(url.path().to_string()),
        UrlPart::Host => url.host_str().map(String::from),
        UrlPart::Query(name) => url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(url: Scalar<'static>) -> Result<Vec<Option<Scalar<'static>>>, String> {
        let d = |target, part| Derived {
            target,
            source: 0,
            source_name: "url".into(),
            part,
        };
        let derived = [
            d(1, UrlPart::Path),
            d(2, UrlPart::Query("utm_source".into())),
            d(3, UrlPart::Host),
        ];
        let mut fields = vec![Some(url), None, None, None];
        apply(&derived, &mut fields).map(|()| fields)
    }

    fn text(s: &str) -> Option<Scalar<'static>> {
        Some(Scalar::Str(s.to_string().into()))
    }

    #[test]
    fn url_parts() {
        let got = derive(Scalar::Str(
            "https://shop.example.com/p/caf%C3%A9?utm_medium=email&utm_source=news+letter&utm_source=x".into(),
        ))
        .unwrap();
        assert_eq!(got[1], text("/p/caf%C3%A9"));
        assert_eq!(got[2], text("news letter"));
        assert_eq!(got[3], text("shop.example.com"));
        let got = derive(Scalar::Str("/cart".into())).unwrap();
        assert_eq!(
            (got[1].clone(), got[2].clone()),
            (text("/cart"), Some(Scalar::Null))
        );
    }

    #[test]
    fn bad_urls_are_errors_and_missing_stays_missing() {
        assert!(derive(Scalar::Str("ht tp://x".into()))
            .unwrap_err()
            .contains("`url`"));
        assert!(derive(Scalar::Str("http://[::1".into())).is_err());
        assert!(derive(Scalar::Int(3)).is_err());
        assert_eq!(derive(Scalar::Null).unwrap()[1], None);
    }
}
