//! A test plugin that misbehaves when the record tells it to, so the integration tests can
//! check that the host contains each kind of misbehaviour to the one record that caused it.
//!
//! For every record it first writes state (batch `count` = records seen so far in the batch,
//! as decimal text; durable `last` = the record's data), so tests can check that the writes of
//! a failed record are discarded. Then, if the data contains one of these markers:
//!
//! | marker           | behaviour                                                       |
//! |------------------|-----------------------------------------------------------------|
//! | `POISON:loop`    | spins forever (fuel or the deadline must stop it)               |
//! | `POISON:alloc`   | allocates and touches 1 MiB chunks forever (memory limit)        |
//! | `POISON:recurse` | recurses without bound, using real stack (stack limit)           |
//! | `POISON:panic`   | panics with "poison pill" (a trap)                               |
//! | `POISON:big`     | returns one output of config `big_bytes` bytes (default 16 MiB)  |
//! | `POISON:error`   | returns `Error::InvalidRecord("poison pill")`                    |
//! | `POISON:print`   | prints a line to stdout and stderr, then passes the data through |
//! | `POISON:escape`  | tries env, args, filesystem and network; outputs what worked     |
//!
//! Any other record passes through unchanged to `default`. `flush` emits `{"count":N}` when
//! config `flush` = `count`, fails with `Error::Transient("flush failed")` when it is `fail`,
//! and emits nothing otherwise.

use postprocess_sdk::{Error, Output, Record, Scope, config, state};
use std::hint::black_box;

/// The output size for `POISON:big` when config `big_bytes` is not set.
const DEFAULT_BIG_BYTES: usize = 16 << 20;

fn process(record: Record) -> Result<Vec<Output>, Error> {
    // State is written before misbehaving, so the host's discarding of a failed record's
    // writes is observable.
    let count = batch_count() + 1;
    state::set(Scope::Batch, "count", count.to_string().as_bytes());
    state::set(Scope::Durable, "last", &record.data);

    let data = &record.data;
    if contains(data, b"POISON:loop") {
        spin_forever()
    } else if contains(data, b"POISON:alloc") {
        exhaust_memory()
    } else if contains(data, b"POISON:recurse") {
        black_box(recurse(0));
        unreachable!("unbounded recursion returned")
    } else if contains(data, b"POISON:panic") {
        panic!("poison pill")
    } else if contains(data, b"POISON:big") {
        Ok(vec![Output::new(vec![b'x'; big_bytes()?])])
    } else if contains(data, b"POISON:error") {
        Err(Error::InvalidRecord("poison pill".into()))
    } else if contains(data, b"POISON:escape") {
        Ok(vec![Output::new(escape_attempts())])
    } else {
        if contains(data, b"POISON:print") {
            println!("hostile plugin: stdout line");
            eprintln!("hostile plugin: stderr line");
        }
        Ok(vec![Output::new(record.data)])
    }
}

/// Tries to reach outside the sandbox and reports what worked, as JSON.
fn escape_attempts() -> String {
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let read = ["/etc/hostname", "/", "."]
        .iter()
        .filter(|p| std::fs::read_dir(p).is_ok() || std::fs::read(p).is_ok())
        .count();
    let write = std::fs::write("escape.txt", b"x").is_ok();
    let connect = std::net::TcpStream::connect("127.0.0.1:22").is_ok();
    format!(
        "{{\"env\":{env},\"args\":{args},\"read\":{read},\"write\":{write},\"connect\":{connect}}}"
    )
}

fn flush() -> Result<Vec<Output>, Error> {
    match config("flush").as_deref() {
        Some("count") => Ok(vec![Output::new(format!(
            "{{\"count\":{}}}",
            batch_count()
        ))]),
        Some("fail") => Err(Error::Transient("flush failed".into())),
        _ => Ok(vec![]),
    }
}

postprocess_sdk::export!(process, flush = flush);

/// The batch counter; absent (or unreadable) counts as zero.
fn batch_count() -> u64 {
    state::get(Scope::Batch, "count")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn big_bytes() -> Result<usize, Error> {
    match config("big_bytes") {
        None => Ok(DEFAULT_BIG_BYTES),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| Error::InvalidConfig(format!("big_bytes `{v}` is not a size: {e}"))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn spin_forever() -> ! {
    // black_box keeps the optimizer from proving the loop does nothing.
    let mut i = 0u64;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Writing every page makes the memory real even where fresh pages read as zero.
        let mut chunk = vec![0u8; 1 << 20];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        chunks.push(black_box(chunk));
    }
}

/// Recurses until the stack runs out. Each frame keeps a 1 KiB array alive across the call, so
/// the recursion can neither become a loop nor use a tiny frame.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    // Never true; it only keeps the recursion from looking unconditional to the compiler.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(black_box(frame)[depth as usize % 1024])
}

#[cfg(test)]
mod tests {
    use super::*;
    use postprocess_sdk::testing;

    fn stored(scope: Scope, key: &str) -> Option<String> {
        state::get(scope, key).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn passes_plain_records_through_and_counts_them() {
        testing::reset();
        for i in 1..=3 {
            let data = format!("{{\"n\":{i}}}");
            assert_eq!(
                process(Record::new(data.clone())),
                Ok(vec![Output::new(data.clone())])
            );
            assert_eq!(stored(Scope::Batch, "count"), Some(i.to_string()));
            assert_eq!(stored(Scope::Durable, "last"), Some(data));
        }
    }

    #[test]
    fn writes_state_before_failing() {
        testing::reset();
        let err = process(Record::new("x POISON:error y")).unwrap_err();
        assert_eq!(err, Error::InvalidRecord("poison pill".into()));
        assert_eq!(stored(Scope::Batch, "count").as_deref(), Some("1"));
        assert_eq!(
            stored(Scope::Durable, "last").as_deref(),
            Some("x POISON:error y")
        );
    }

    #[test]
    fn panics_on_the_panic_marker() {
        testing::reset();
        let caught = std::panic::catch_unwind(|| process(Record::new("POISON:panic")));
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"poison pill"));
    }

    #[test]
    fn returns_a_big_output_of_the_configured_size() {
        testing::reset();
        testing::set_config("big_bytes", "1000");
        let out = process(Record::new("POISON:big")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 1000);

        testing::set_config("big_bytes", "lots");
        assert!(matches!(
            process(Record::new("POISON:big")),
            Err(Error::InvalidConfig(m)) if m.contains("lots")
        ));
    }

    #[test]
    fn big_output_defaults_to_16_mib() {
        testing::reset();
        let out = process(Record::new("POISON:big")).unwrap();
        assert_eq!(out[0].data.len(), 16 * 1024 * 1024);
    }

    #[test]
    fn print_marker_passes_the_data_through() {
        testing::reset();
        let out = process(Record::new("POISON:print")).unwrap();
        assert_eq!(out, vec![Output::new("POISON:print")]);
    }

    #[test]
    fn flush_follows_its_config() {
        testing::reset();
        process(Record::new("a")).unwrap();
        process(Record::new("b")).unwrap();
        assert_eq!(flush(), Ok(vec![]));

        testing::set_config("flush", "count");
        assert_eq!(flush(), Ok(vec![Output::new("{\"count\":2}")]));
        testing::end_batch();
        assert_eq!(flush(), Ok(vec![Output::new("{\"count\":0}")]));

        testing::set_config("flush", "fail");
        assert_eq!(flush(), Err(Error::Transient("flush failed".into())));
    }

    #[test]
    fn markers_are_found_anywhere_in_the_data() {
        assert!(contains(b"{\"k\":\"POISON:loop\"}", b"POISON:loop"));
        assert!(!contains(b"POISON:lo", b"POISON:loop"));
        assert!(!contains(b"", b"POISON:loop"));
    }
}
