//! A plugin that returns every record unchanged to the `default` destination.
//!
//! It does no work of its own, so benchmarks run against it measure what the host costs per
//! record: instantiation, copying data across the component boundary, and delivery.

use postprocess_sdk::{Error, Output, Record};

/// Passes the record's bytes through; moving them avoids a copy. Public so benchmarks can
/// run the same code natively.
pub fn process(record: Record) -> Result<Vec<Output>, Error> {
    Ok(vec![Output::new(record.data)])
}

postprocess_sdk::export!(process);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_data_unchanged_to_default() {
        let data = "{\"a\": 1, \"é\": \"ünïcode\"}\n";
        let out = process(Record::new(data)).unwrap();
        assert_eq!(out, vec![Output::to("default", data)]);
    }

    #[test]
    fn passes_non_utf8_and_empty_data_through() {
        assert_eq!(
            process(Record::new(vec![0xff, 0x00, 0xfe])).unwrap(),
            vec![Output::new(vec![0xff, 0x00, 0xfe])]
        );
        assert_eq!(process(Record::new("")).unwrap(), vec![Output::new("")]);
    }
}
