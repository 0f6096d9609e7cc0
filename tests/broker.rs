//! `streamstats broker` (dev only, librdkafka's mock cluster): it starts, prints its address, and
//! `replay` + `run --until-end` through it give the file replay's rows. Kafka itself is covered
//! by tests/kafka.rs against a real broker process; this only covers the demo subcommand.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The broker process, killed when the test ends (it runs until interrupted).
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dev_broker_serves_replay_and_until_end_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker(
        common::binary()
            .args(["broker", "--topic", "sps", "--partitions", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start streamstats broker"),
    );
    let mut address = String::new();
    BufReader::new(broker.0.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim();
    assert!(
        address.starts_with("127.0.0.1:"),
        "first line is the address: {address:?}"
    );
    let input = dir.path().join("sps.jsonl");
    common::generate(
        "sps",
        &input,
        &[
            "--events",
            "20000",
            "--seed",
            "21",
            "--malformed-fraction",
            "0.002",
        ],
    );
    let file_out = dir.path().join("file.jsonl");
    let (sps, url) = (common::dataflow("sps"), format!("kafka://{address}/sps"));
    common::streamstats(&[
        "run",
        &sps,
        "--input",
        input.to_str().unwrap(),
        "--output",
        file_out.to_str().unwrap(),
        "--dead-letter",
        "/dev/null",
    ]);
    common::streamstats(&[
        "replay",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--partitions",
        "3",
    ]);
    let kafka_out = dir.path().join("kafka.jsonl");
    let mut run = Command::new(common::BIN);
    run.args(["run", &sps, "--input", &url, "--until-end", "-w", "2"])
        .args([
            "--output",
            kafka_out.to_str().unwrap(),
            "--dead-letter",
            "/dev/null",
        ]);
    common::checked(&mut run);
    let expected = common::rows(&[file_out]);
    assert!(expected.len() > 1000, "fixture too small");
    assert!(
        common::rows(&[kafka_out]) == expected,
        "rows through the dev broker differ from the file replay's"
    );
}
