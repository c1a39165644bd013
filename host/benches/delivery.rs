//! Delivery: how long one batch of 1,000 records takes to reach each destination kind, through
//! the real `Processor` (identity plugin, outputs to `default`), against the same local servers
//! the tests use: moto for S3, SQS, SNS, DynamoDB and CloudWatch, PostgreSQL, and an in-process
//! HTTP server. It measures the host's batching and concurrency against servers on 127.0.0.1,
//! not AWS latency: real services answer in milliseconds, not microseconds, so in AWS the
//! number of sequential round trips (shown per destination) is what dominates.
//!
//! Each run sends 1,000 new rows (~500 bytes of JSON each), so nothing is deduplicated away;
//! the processor is built once, as in a warm Lambda container. `RUNS` (default 3) sets the runs
//! per destination. Run with `scripts/bench` or `cargo bench -p postprocess --bench delivery`;
//! it writes `BENCHMARKS-delivery.md` at the workspace root.

use postprocess::aws::AwsSettings;
use postprocess::contract::Event;
use postprocess::{Config, Processor};
use postprocess_tests::plugins::IDENTITY;
use postprocess_tests::rpc_v2_cbor::RpcV2CborBridge;
use postprocess_tests::services::{HttpServer, Moto, Postgres};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const RECORDS: usize = 1_000;

/// One destination kind: its label, its target, and the sequential round trips its batching
/// and concurrency imply for 1,000 outputs.
struct Case {
    label: &'static str,
    target: String,
    round_trips: &'static str,
}

fn row(run: usize, i: usize) -> Vec<u8> {
    let sector = ["ENERGY", "RETAIL", "TECH"][i % 3];
    json!({
        "id": format!("run{run}-{i}"),
        "ticker": format!("T{:03}", i % 500),
        "metric": "Price",
        "value": 10.0 + (i % 97) as f64,
        "unit": "None",
        "sector": sector,
        "note": "x".repeat(360),
    })
    .to_string()
    .into_bytes()
}

fn event(run: usize) -> String {
    use base64::Engine as _;
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            json!({
                "recordId": format!("{run}-{i}"),
                "lambdaDeliveryRecordMetadata": {"retryHint": 0},
                "data": base64::engine::general_purpose::STANDARD.encode(row(run, i)),
            })
        })
        .collect();
    json!({
        "invocationId": format!("bench-{run}"),
        "applicationArn": "arn:aws:kinesisanalytics:us-east-1:123456789012:application/bench",
        "records": records,
    })
    .to_string()
}

/// Creates what the destinations write to; answers the SQS client and the queue URLs, which
/// are purged before every run: moto slows down as a queue fills (a `SendMessageBatch` takes
/// ~10 ms on an empty queue and ~500 ms with 1,000 messages in it).
async fn setup(moto: &Moto, postgres: &Postgres) -> (aws_sdk_sqs::Client, Vec<String>) {
    let env: BTreeMap<String, String> = moto.env().into_iter().collect();
    let sdk = AwsSettings::from_lookup(|k| env.get(k).cloned())
        .expect("AWS settings")
        .load()
        .await;
    aws_sdk_s3::Client::new(&sdk)
        .create_bucket()
        .bucket("bench")
        .send()
        .await
        .expect("bucket");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut queues = Vec::new();
    for name in ["bench", "bench.fifo"] {
        let mut request = sqs.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        let created = request.send().await.expect("queue");
        queues.push(created.queue_url().expect("queue URL").to_string());
    }
    aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name("bench")
        .send()
        .await
        .expect("topic");
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    aws_sdk_dynamodb::Client::new(&sdk)
        .create_table()
        .table_name("bench")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("table");
    postgres
        .execute_in(
            Postgres::DATABASE,
            "CREATE TABLE ticks (key text PRIMARY KEY, id text, ticker text, value float8)",
        )
        .expect("table");
    (sqs, queues)
}

fn cases(moto: &Moto, postgres: &Postgres, http: &HttpServer, out: &Path) -> Vec<Case> {
    let queue = |name: &str| format!("{}/123456789012/{name}", moto.endpoint());
    vec![
        Case {
            label: "discard (plugin and pipeline only)",
            target: "discard".into(),
            round_trips: "0",
        },
        Case {
            label: "dir (local files)",
            target: format!("dir:{}", out.display()),
            round_trips: "0",
        },
        Case {
            label: "S3, one object per output",
            target: "s3://bench/out/".into(),
            round_trips: "63 (1,000 PUTs, 16 at a time)",
        },
        Case {
            label: "SQS standard",
            target: format!("sqs:{}", queue("bench")),
            round_trips: "25 (100 batches of 10, 4 at a time)",
        },
        Case {
            label: "SQS FIFO",
            target: format!("sqs:{}", queue("bench.fifo")),
            round_trips: "100 (batches of 10 in order)",
        },
        Case {
            label: "SNS standard",
            target: "sns:arn:aws:sns:us-east-1:123456789012:bench".into(),
            round_trips: "25 (100 batches of 10, 4 at a time)",
        },
        Case {
            label: "DynamoDB",
            target: "dynamodb:bench".into(),
            round_trips: "10 (40 batches of 25, 4 at a time)",
        },
        Case {
            label: "CloudWatch Logs",
            target: "cloudwatch-logs:/bench/stream".into(),
            round_trips: "1 (one PutLogEvents)",
        },
        Case {
            label: "CloudWatch metrics (through the CBOR bridge)",
            target: "cloudwatch-metrics:Bench".into(),
            round_trips: "1 (one PutMetricData of 1,000)",
        },
        Case {
            label: "HTTP POST per output",
            target: format!("{}/ingest", http.url()),
            round_trips: "125 (1,000 POSTs, 8 at a time)",
        },
        Case {
            label: "PostgreSQL",
            target: format!("{}#table=ticks&columns=id;ticker;value", postgres.url()),
            round_trips: "1 transaction of 2 inserts of 500 rows",
        },
    ]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let moto = Moto::start().expect("moto_server (run scripts/setup)");
    let bridge = RpcV2CborBridge::start(&moto.endpoint()).expect("bridge");
    let postgres = Postgres::start().expect("PostgreSQL (run scripts/setup)");
    let http = HttpServer::start().expect("HTTP server");
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (sqs, queues) = runtime.block_on(setup(&moto, &postgres));
    // `cargo bench --bench delivery -- WORD...` runs only the destinations whose label has one.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.to_lowercase())
        .collect();
    let events: Vec<String> = (0..runs).map(event).collect();

    let mut results = Vec::new();
    for case in cases(&moto, &postgres, &http, &dir.path().join("out")) {
        let label = case.label.to_lowercase();
        if !only.is_empty() && !only.iter().any(|word| label.contains(word)) {
            continue;
        }
        let mut vars: BTreeMap<String, String> = moto.env().into_iter().collect();
        vars.insert("PLUGIN_URI".into(), IDENTITY.into());
        vars.insert("DESTINATIONS".into(), format!("default={}", case.target));
        vars.insert("AWS_ENDPOINT_URL_CLOUDWATCH".into(), bridge.url());
        vars.insert(
            "STATE_DIR".into(),
            dir.path().join("state").display().to_string(),
        );
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        runtime.block_on(async {
            let processor = Processor::new(&config).await.expect("processor");
            for event in &events {
                for queue in &queues {
                    sqs.purge_queue()
                        .queue_url(queue)
                        .send()
                        .await
                        .expect("purge");
                }
                let event = Event::from_json(event).expect("event");
                let (started, cpu_before) = (Instant::now(), host_cpu_ms());
                // Lambda's longest deadline: moto alone needs ~30 s for 1,000 SQS messages.
                let handled = processor
                    .handle(event, Instant::now() + Duration::from_secs(900))
                    .await;
                times.push(started.elapsed().as_secs_f64() * 1e3);
                cpu.push(host_cpu_ms() - cpu_before);
                let failed = handled.failures.iter().flatten().count();
                assert_eq!(
                    failed,
                    0,
                    "{}: {:?}",
                    case.label,
                    handled.failures.iter().flatten().next()
                );
            }
        });
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        eprintln!("{}: {times:.1?} ms, host CPU {cpu:.1?} ms", case.label);
        results.push((case, times, cpu[cpu.len() / 2]));
    }

    if !only.is_empty() {
        return;
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Delivery benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench -p postprocess --bench delivery` (source `host/benches/delivery.rs`, \
         run by `scripts/bench`) on {}. One batch of 1,000 records of ~500 bytes, identity plugin, \
         every output to the one destination; {runs} runs each, new rows every run, one processor \
         (clients and pools built once). Every record was acknowledged `Ok` in every run.\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let _ = writeln!(
        md,
        "The servers are local (moto_server, PostgreSQL {}, an in-process HTTP server), so these \
         figures show the host's batching and concurrency plus the local servers' own speed \
         (moto is a Python server that answers every request with `Connection: close`, so each AWS \
         call here also opens a TCP connection). Against AWS each round trip costs \
         milliseconds, so the sequential round trips column is the better guide there.\n",
        command_output("pg_config", &["--version"]).trim_start_matches("PostgreSQL ")
    );
    let _ = writeln!(
        md,
        "| destination | fastest ms | median ms | records/s (median) | host CPU ms (median) | sequential round trips |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
    for (case, times, cpu) in &results {
        let median = times[times.len() / 2];
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
            case.label,
            times[0],
            median,
            RECORDS as f64 / (median / 1e3),
            cpu,
            case.round_trips
        );
    }
    let _ = writeln!(
        md,
        "\nHost CPU is the CPU time of this process's threads during the run, less the \
         in-process HTTP server's and the CBOR bridge's threads: what the host itself spends, \
         whatever the server's speed. moto's SQS takes time proportional to the queue's length \
         for every `SendMessageBatch` (~10 ms on an empty queue, ~500 ms with 1,000 messages \
         queued; the queues are purged before each run), so the SQS rows measure moto."
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::write(root.join("BENCHMARKS-delivery.md"), md).expect("writing the report");
    eprintln!("wrote BENCHMARKS-delivery.md");
}

/// CPU milliseconds used so far by this process's threads, except the in-process servers'
/// (`/proc/self/task/*/schedstat`, nanosecond resolution).
fn host_cpu_ms() -> f64 {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("http-server") || comm.starts_with("rpc-v2-cbor") {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e6
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
