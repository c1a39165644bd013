//! Real destinations against real servers on 127.0.0.1: moto (S3, SQS, SNS, DynamoDB,
//! CloudWatch Logs and metrics), PostgreSQL and an HTTP server. Each test routes a KDA event
//! through the router plugin, reads back what arrived and compares it with what was emitted,
//! then checks the fault cases: a destination that is down, HTTP 500 and 429, partial batch
//! failures, and replays.

use crate::{Env, causes, event, plugin};
use postprocess::aws::AwsSettings;
use postprocess::destinations::Envelope;
use postprocess_tests::rpc_v2_cbor::{CLOUDWATCH, RpcV2CborBridge, json_call};
use postprocess_tests::services::{HttpServer, Moto, Postgres};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The moto server shared by the tests that run at the same time (each start costs about a
/// second); it stops when the last of them drops it. Tests use names of their own.
fn moto() -> Arc<Moto> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(moto) = shared.upgrade() {
        return moto;
    }
    let moto = Arc::new(Moto::start().expect("moto_server starts"));
    *shared = Arc::downgrade(&moto);
    moto
}

/// The SDK configuration for moto, loaded the way the host loads its own.
async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    let env: BTreeMap<String, String> = moto.env().into_iter().collect();
    AwsSettings::from_lookup(|k| env.get(k).cloned())
        .expect("valid AWS settings")
        .load()
        .await
}

/// A router pipeline (`type` names the destination) with `DESTINATIONS` and moto's variables.
fn routed(destinations: &str, moto: Option<&Moto>) -> Env {
    let mut env =
        Env::new(&format!("{}?field=type", plugin::ROUTER)).with("DESTINATIONS", destinations);
    for (key, value) in moto.map(Moto::env).unwrap_or_default() {
        env = env.with(&key, &value);
    }
    env
}

/// `n` JSON rows routed to `destination`, with ids `tag-0`, `tag-1`, ...
fn rows(destination: &str, tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            json!({
                "type": destination,
                "id": format!("{tag}-{i}"),
                "ticker": format!("T{i:03}"),
                "price": 10.5 + i as f64,
                "meta": {"n": i, "tags": ["a", "b"]},
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

fn key(destination: &str, row: &[u8]) -> String {
    Envelope::new(destination, row.to_vec()).key
}

fn text(row: &[u8]) -> String {
    String::from_utf8(row.to_vec()).expect("UTF-8 row")
}

/// The failed records, by index, with their causes; everything else was Ok.
fn failed(handled: &postprocess::handler::Handled) -> BTreeMap<usize, &'static str> {
    causes(handled)
}

#[tokio::test]
async fn s3_writes_one_object_per_output_and_replays_overwrite_it() {
    let moto = moto();
    let s3 = aws_sdk_s3::Client::new(&sdk(&moto).await);
    s3.create_bucket()
        .bucket("dest-s3-archive")
        .send()
        .await
        .unwrap();
    let env = routed(
        "archive=s3://dest-s3-archive/kda/out/#suffix=.json,lost=s3://dest-s3-no-such-bucket/x/",
        Some(&moto),
    );
    let mut all = rows("archive", "s3", 6);
    all.insert(2, rows("lost", "s3", 1).remove(0));
    let event = event(&all);

    for _ in 0..2 {
        let handled = env.run(&event).await;
        // The output for the missing bucket fails its own record only.
        assert_eq!(failed(&handled), BTreeMap::from([(2, "destination")]));
        let listed = s3
            .list_objects_v2()
            .bucket("dest-s3-archive")
            .prefix("kda/out/")
            .send()
            .await
            .unwrap();
        let keys: BTreeSet<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(String::from))
            .collect();
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|r| !text(r).contains("\"lost\""))
            .map(|r| format!("kda/out/{}.json", key("archive", r)))
            .collect();
        assert_eq!(keys, expected, "a replay rewrites the same objects");
    }
    let row = &all[0];
    let object = s3
        .get_object()
        .bucket("dest-s3-archive")
        .key(format!("kda/out/{}.json", key("archive", row)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        row.as_slice()
    );
}

/// Receives everything in a queue, deleting as it goes (a FIFO group yields its next messages
/// only once the ones before are deleted).
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(message.body().unwrap_or_default().to_string());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    request
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

/// A topic with a queue subscribed to it (raw delivery): the topic's ARN and the queue's URL.
async fn subscribed_topic(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let topic = sns.create_topic().name(name).send().await.unwrap();
    let topic_arn = topic.topic_arn().unwrap().to_string();
    let queue_url = queue(sqs, &format!("{name}-subscriber")).await;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&attributes.attributes().unwrap()[&QueueAttributeName::QueueArn])
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic_arn, queue_url)
}

/// An on-demand DynamoDB table keyed by the string attribute `key`.
async fn table(dynamodb: &aws_sdk_dynamodb::Client, name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn sqs_batches_fifo_deduplicates_replays_and_an_oversized_message_fails_alone() {
    let moto = moto();
    let sqs = aws_sdk_sqs::Client::new(&sdk(&moto).await);
    let fifo = queue(&sqs, "dest-sqs-orders.fifo").await;
    let standard = queue(&sqs, "dest-sqs-events").await;
    let env = routed(
        &format!("orders=sqs:{fifo},events=sqs:{standard}"),
        Some(&moto),
    );
    let orders = rows("orders", "sqs", 23);
    let events = rows("events", "sqs", 3);
    let oversized = json!({"type": "events", "pad": "x".repeat(1_100_000)})
        .to_string()
        .into_bytes();
    let mut all = orders.clone();
    all.extend(events.clone());
    all.push(oversized);
    let event = event(&all);

    let handled = env.run(&event).await;
    assert_eq!(failed(&handled), BTreeMap::from([(26, "destination")]));
    // A replay before anything is received. SQS keeps a FIFO deduplication id for 5 minutes
    // even after the message is deleted; moto only while the first copy is still queued, so
    // the replay is checked here, with the first copies in the queue.
    let handled = env.run(&event).await;
    assert_eq!(failed(&handled), BTreeMap::from([(26, "destination")]));

    // FIFO: every output once, in the order KDA sent them.
    assert_eq!(
        drain(&sqs, &fifo).await,
        orders.iter().map(|r| text(r)).collect::<Vec<_>>()
    );
    // A standard queue has no deduplication: both copies arrive.
    let mut received = drain(&sqs, &standard).await;
    received.sort();
    let mut expected: Vec<String> = events.iter().chain(&events).map(|r| text(r)).collect();
    expected.sort();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn sns_publishes_batches_that_reach_a_subscribed_queue() {
    let moto = moto();
    let config = sdk(&moto).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let (topic_arn, queue_url) = subscribed_topic(&sns, &sqs, "dest-sns-alerts").await;
    let env = routed(&format!("alerts=sns:{topic_arn}"), Some(&moto));
    let alerts = rows("alerts", "sns", 13);

    let handled = env.run(&event(&alerts)).await;
    assert!(failed(&handled).is_empty(), "{:?}", handled.failures);
    let mut received = drain(&sqs, &queue_url).await;
    received.sort();
    let mut expected: Vec<String> = alerts.iter().map(|r| text(r)).collect();
    expected.sort();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn dynamodb_puts_items_idempotently_and_an_invalid_item_fails_alone() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = moto();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk(&moto).await);
    table(&dynamodb, "dest-ddb-items", "id").await;
    table(&dynamodb, "dest-ddb-by-content", "pk").await;
    let env = routed(
        "items=dynamodb:dest-ddb-items,hashed=dynamodb:dest-ddb-by-content#key=pk",
        Some(&moto),
    );
    let mut all = rows("items", "ddb", 30);
    // No `id`: DynamoDB refuses the item (and with it the whole batch of 25).
    all.insert(
        7,
        json!({"type": "items", "ticker": "NOKEY"})
            .to_string()
            .into_bytes(),
    );
    all.extend(rows("hashed", "ddb", 4));
    let event = event(&all);

    for _ in 0..2 {
        let handled = env.run(&event).await;
        assert_eq!(failed(&handled), BTreeMap::from([(7, "destination")]));
        for (table, count) in [("dest-ddb-items", 30), ("dest-ddb-by-content", 4)] {
            let scanned = dynamodb.scan().table_name(table).send().await.unwrap();
            assert_eq!(
                scanned.count(),
                count,
                "{table}: replays overwrite the same items"
            );
        }
    }
    let item = dynamodb
        .get_item()
        .table_name("dest-ddb-items")
        .key("id", AttributeValue::S("ddb-3".into()))
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the item");
    assert_eq!(item["price"], AttributeValue::N("13.5".into()));
    assert_eq!(item["ticker"], AttributeValue::S("T003".into()));
    let AttributeValue::M(meta) = &item["meta"] else {
        panic!("meta is a map: {item:?}")
    };
    assert_eq!(
        meta["tags"],
        AttributeValue::L(vec![
            AttributeValue::S("a".into()),
            AttributeValue::S("b".into())
        ])
    );
    let hashed_row = all.last().unwrap();
    let by_content = dynamodb
        .get_item()
        .table_name("dest-ddb-by-content")
        .key("pk", AttributeValue::S(key("hashed", hashed_row)))
        .send()
        .await
        .unwrap();
    assert!(by_content.item().is_some());
}

#[tokio::test]
async fn cloudwatch_logs_get_every_output_in_order() {
    let moto = moto();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk(&moto).await);
    // Neither the group nor the stream exists: the destination creates them.
    let env = routed(
        "logs=cloudwatch-logs:/kda/dest-test/out-stream",
        Some(&moto),
    );
    let lines = rows("logs", "cwl", 7);
    let handled = env.run(&event(&lines)).await;
    assert!(failed(&handled).is_empty(), "{:?}", handled.failures);
    let events = logs
        .get_log_events()
        .log_group_name("/kda/dest-test")
        .log_stream_name("out-stream")
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let messages: Vec<&str> = events.events().iter().filter_map(|e| e.message()).collect();
    let expected: Vec<String> = lines.iter().map(|r| text(r)).collect();
    assert_eq!(messages, expected);
}

#[tokio::test]
async fn cloudwatch_metrics_come_from_the_output_json_and_a_bad_one_fails_alone() {
    let moto = moto();
    // The SDK speaks RPC v2 CBOR to CloudWatch, moto only JSON and Query: see rpc_v2_cbor.
    let bridge = RpcV2CborBridge::start(&moto.endpoint()).unwrap();
    let env = routed("metrics=cloudwatch-metrics:PostprocessTest", Some(&moto))
        .with("AWS_ENDPOINT_URL_CLOUDWATCH", &bridge.url());
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let datum = |value: f64, sector: &str| {
        json!({"type": "metrics", "metric": "PriceChange", "value": value, "unit": "Percent",
               "dimensions": {"sector": sector}, "timestamp": now_s * 1000})
        .to_string()
        .into_bytes()
    };
    let mut all = vec![
        datum(1.5, "ENERGY"),
        json!({"type": "metrics", "metric": "PriceChange"})
            .to_string()
            .into_bytes(),
        datum(2.5, "ENERGY"),
        json!({"type": "metrics", "0": [
            {"metric": "Trades", "value": 3, "unit": "Count"},
        ]})
        .to_string()
        .into_bytes(),
        datum(-1.0, "RETAIL"),
    ];
    // 400 more datums: one PutMetricData over 10 KB, which the SDK gzips.
    all.extend((0..400).map(|i| {
        json!({"type": "metrics", "metric": "Ticks", "value": i, "unit": "Count"})
            .to_string()
            .into_bytes()
    }));
    let handled = env.run(&event(&all)).await;
    // The output without a value, and the one shaped wrongly, fail alone.
    assert_eq!(
        failed(&handled),
        BTreeMap::from([(1, "destination"), (3, "destination")]),
        "{:?}",
        handled.failures
    );

    let cloudwatch = |operation: &'static str, body: Value| {
        let endpoint = moto.endpoint();
        async move {
            json_call(&endpoint, CLOUDWATCH, operation, &body)
                .await
                .unwrap()
        }
    };
    let listed = cloudwatch("ListMetrics", json!({"Namespace": "PostprocessTest"})).await;
    let mut sectors: Vec<&str> = listed["Metrics"]
        .as_array()
        .expect("Metrics")
        .iter()
        .filter(|m| m["MetricName"] == "PriceChange")
        .flat_map(|m| m["Dimensions"].as_array().into_iter().flatten())
        .filter_map(|d| d["Value"].as_str())
        .collect();
    sectors.sort();
    sectors.dedup();
    assert_eq!(sectors, ["ENERGY", "RETAIL"]);
    // Sum and SampleCount over the last and next ten minutes, per minute.
    let statistics = |metric: &'static str, dimensions: Option<Value>| async move {
        let mut request = json!({
            "Namespace": "PostprocessTest", "MetricName": metric,
            "StartTime": now_s - 600, "EndTime": now_s + 600, "Period": 60,
            "Statistics": ["Sum", "SampleCount"],
        });
        if let Some(dimensions) = dimensions {
            request["Dimensions"] = dimensions;
        }
        let answer = cloudwatch("GetMetricStatistics", request).await;
        answer["Datapoints"].as_array().expect("Datapoints").clone()
    };
    let total = |points: &[Value], field: &str| -> f64 {
        points.iter().filter_map(|p| p[field].as_f64()).sum()
    };
    let points = statistics(
        "PriceChange",
        Some(json!([{"Name": "sector", "Value": "ENERGY"}])),
    )
    .await;
    assert_eq!(total(&points, "Sum"), 4.0, "{points:?}");
    assert_eq!(total(&points, "SampleCount"), 2.0, "{points:?}");
    let ticks = statistics("Ticks", None).await;
    assert_eq!(total(&ticks, "SampleCount"), 400.0, "{ticks:?}");
    assert_eq!(total(&ticks, "Sum"), (0..400).sum::<i32>() as f64);
    // The unit and timestamp came from the output's JSON.
    assert!(points.iter().all(|p| p["Unit"] == "Percent"), "{points:?}");
    assert!(
        points
            .iter()
            .all(|p| p["Timestamp"].as_f64() == Some(now_s as f64)),
        "{points:?}"
    );
}

#[tokio::test]
async fn http_posts_each_output_retrying_500_and_429() {
    let server = HttpServer::start().unwrap();
    let env = routed(
        &format!(
            "api={}/ingest?source=kda#header.Authorization=Bearer%20t0ken&retries=3",
            server.url()
        ),
        None,
    );
    let posts = rows("api", "http", 5);
    // The first two requests fail (500, then 429): both are retried.
    server.respond_with(vec![500, 429]);
    let handled = env.run(&event(&posts)).await;
    assert!(failed(&handled).is_empty(), "{:?}", handled.failures);
    let requests = server.wait_for_requests(7, Duration::from_secs(5)).unwrap();
    assert_eq!(requests.len(), 7);
    let mut by_key: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/ingest?source=kda");
        assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let idempotency_key = request.header("idempotency-key").unwrap().to_string();
        by_key.insert(idempotency_key, request.body.clone());
    }
    let expected: BTreeMap<String, Vec<u8>> =
        posts.iter().map(|r| (key("api", r), r.clone())).collect();
    assert_eq!(by_key, expected);
}

#[tokio::test]
async fn http_errors_that_persist_or_are_final_fail_the_records() {
    let server = HttpServer::start().unwrap();
    let env = routed(&format!("api={}/hook#retries=2", server.url()), None);
    let posts = rows("api", "http-fail", 2);

    server.respond_with(vec![500; 6]);
    let handled = env.run(&event(&posts)).await;
    assert_eq!(
        failed(&handled),
        BTreeMap::from([(0, "destination"), (1, "destination")])
    );
    assert_eq!(
        server.requests().len(),
        6,
        "one attempt and two retries each"
    );

    server.clear_requests();
    server.respond_with(vec![400]);
    let handled = env.run(&event(&posts[..1])).await;
    assert_eq!(failed(&handled), BTreeMap::from([(0, "destination")]));
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn postgres_inserts_rows_once_and_a_row_breaking_a_constraint_fails_alone() {
    let postgres = Postgres::start().unwrap();
    postgres
        .execute_in(
            Postgres::DATABASE,
            "CREATE SCHEMA kda; CREATE TABLE kda.ticks (
                key text PRIMARY KEY,
                ticker text NOT NULL,
                price numeric CHECK (price > 0),
                meta jsonb,
                \"Id\" text)",
        )
        .unwrap();
    let env = routed(
        &format!(
            "ticks={}#table=kda.ticks&columns=ticker;price;meta;Id:id",
            postgres.url()
        ),
        None,
    );
    let mut all = rows("ticks", "pg", 12);
    all.insert(
        4,
        json!({"type": "ticks", "ticker": "BAD", "price": -1})
            .to_string()
            .into_bytes(),
    );
    all.insert(9, b"not json".to_vec());
    let event = event(&all);

    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for _ in 0..2 {
        let handled = env.run(&event).await;
        // The router fails the record that is not JSON; the destination the negative price.
        assert_eq!(
            failed(&handled),
            BTreeMap::from([(4, "destination"), (9, "plugin-error")])
        );
        let count: i64 = client
            .query_one("SELECT count(*) FROM kda.ticks", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, 12, "ON CONFLICT keeps replays out");
    }
    let row = client
        .query_one(
            "SELECT key, ticker, price::float8, meta::text, \"Id\" FROM kda.ticks WHERE \"Id\" = 'pg-2'",
            &[],
        )
        .await
        .unwrap();
    let expected = &rows("ticks", "pg", 12)[2];
    assert_eq!(row.get::<_, String>(0), key("ticks", expected));
    assert_eq!(row.get::<_, String>(1), "T002");
    assert_eq!(row.get::<_, f64>(2), 12.5);
    let meta: Value = serde_json::from_str(&row.get::<_, String>(3)).unwrap();
    assert_eq!(meta, json!({"n": 2, "tags": ["a", "b"]}));
}

#[tokio::test]
async fn destinations_that_are_down_fail_their_records_in_time() {
    // Ports where nothing listens: taken from the OS, then released.
    let closed = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (http, aws, pg) = (closed(), closed(), closed());
    let env = routed("", None)
        .with("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{aws}"))
        .with("AWS_REGION", "us-east-1")
        .with("AWS_ACCESS_KEY_ID", "testing")
        .with("AWS_SECRET_ACCESS_KEY", "testing");
    let destinations = format!(
        "api=http://127.0.0.1:{http}/x#retries=1,\
         queue=sqs:http://127.0.0.1:{aws}/123456789012/q,\
         db=postgres://u:p@127.0.0.1:{pg}/db#table=t&columns=a,\
         ok=dir:{}",
        env.out_dir().display()
    );
    let env = env.with("DESTINATIONS", &destinations);
    let mut all = Vec::new();
    for destination in ["api", "queue", "db", "ok"] {
        all.extend(rows(destination, "down", 2));
    }
    let started = Instant::now();
    let handled = env.run(&event(&all)).await;
    let expected: BTreeMap<usize, &str> = (0..6).map(|i| (i, "destination")).collect();
    assert_eq!(failed(&handled), expected);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_database_stopped_after_start_fails_deliveries() {
    let postgres = Postgres::start().unwrap();
    postgres
        .execute_in(
            Postgres::DATABASE,
            "CREATE TABLE t (key text PRIMARY KEY, a text)",
        )
        .unwrap();
    let env = routed(
        &format!("db={}#table=t&columns=a:ticker", postgres.url()),
        None,
    );
    let processor = env.processor().await;
    let event = event(&rows("db", "stop", 3));
    let handled = crate::run(&processor, &event).await;
    assert!(failed(&handled).is_empty(), "{:?}", handled.failures);
    drop(postgres);
    // The pooled connection is now dead, and nothing listens: every record fails.
    let handled = crate::run(&processor, &event).await;
    assert_eq!(failed(&handled).len(), 3);
}

#[tokio::test]
async fn one_event_lands_on_every_destination_kind_it_names() {
    let moto = moto();
    let config = sdk(&moto).await;
    let (s3, sqs, sns) = (
        aws_sdk_s3::Client::new(&config),
        aws_sdk_sqs::Client::new(&config),
        aws_sdk_sns::Client::new(&config),
    );
    let (dynamodb, logs) = (
        aws_sdk_dynamodb::Client::new(&config),
        aws_sdk_cloudwatchlogs::Client::new(&config),
    );
    s3.create_bucket().bucket("all-kinds").send().await.unwrap();
    let standard = queue(&sqs, "all-kinds-events").await;
    let fifo = queue(&sqs, "all-kinds-orders.fifo").await;
    let (topic, subscriber) = subscribed_topic(&sns, &sqs, "all-kinds-alerts").await;
    table(&dynamodb, "all-kinds", "id").await;
    let bridge = RpcV2CborBridge::start(&moto.endpoint()).unwrap();
    let http = HttpServer::start().unwrap();
    let postgres = Postgres::start().unwrap();
    postgres
        .execute_in(
            Postgres::DATABASE,
            "CREATE TABLE ticks (key text PRIMARY KEY, ticker text, \"Id\" text)",
        )
        .unwrap();
    let env = routed("", Some(&moto)).with("AWS_ENDPOINT_URL_CLOUDWATCH", &bridge.url());
    let destinations = [
        "archive=s3://all-kinds/out/".to_string(),
        format!("events=sqs:{standard}"),
        format!("orders=sqs:{fifo}"),
        format!("alerts=sns:{topic}"),
        "items=dynamodb:all-kinds".to_string(),
        "logs=cloudwatch-logs:/all-kinds/stream".to_string(),
        "metrics=cloudwatch-metrics:AllKinds".to_string(),
        format!("api={}/ingest", http.url()),
        format!("ticks={}#table=ticks&columns=ticker;Id:id", postgres.url()),
        format!("files=dir:{}", env.out_dir().display()),
    ]
    .join(",");
    let env = env.with("DESTINATIONS", &destinations);

    // Three rows per destination, interleaved, plus one for a name nothing is bound to.
    let names = [
        "archive", "events", "orders", "alerts", "items", "logs", "metrics", "api", "ticks",
        "files",
    ];
    let mut all: Vec<Vec<u8>> = Vec::new();
    for i in 0..3 {
        for name in names {
            let mut row: Value = serde_json::from_slice(&rows(name, name, i + 1)[i]).unwrap();
            if name == "metrics" {
                row["metric"] = json!("Price");
                row["value"] = row["price"].clone();
            }
            all.push(row.to_string().into_bytes());
        }
    }
    all.push(rows("nowhere", "nowhere", 1).remove(0));
    let sent = |name: &str| -> Vec<&Vec<u8>> {
        all.iter()
            .filter(|r| serde_json::from_slice::<Value>(r).unwrap()["type"] == name)
            .collect()
    };
    let sorted_texts = |rows: &[&Vec<u8>]| {
        let mut texts: Vec<String> = rows.iter().map(|r| text(r)).collect();
        texts.sort();
        texts
    };

    let handled = env.run(&event(&all)).await;
    assert_eq!(
        failed(&handled),
        BTreeMap::from([(all.len() - 1, "destination")]),
        "only the row for the unbound name fails: {:?}",
        handled.failures
    );
    let unbound = handled.failures.last().unwrap().as_ref().unwrap();
    assert!(
        unbound.message.contains("\"nowhere\""),
        "{}",
        unbound.message
    );

    // S3: one object per output, named by its content key.
    for row in sent("archive") {
        let object = s3
            .get_object()
            .bucket("all-kinds")
            .key(format!("out/{}", key("archive", row)))
            .send()
            .await
            .unwrap();
        let body = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(body.as_ref(), row.as_slice());
    }
    // SQS standard and FIFO (in KDA's order), and SNS through its subscribed queue.
    assert_eq!(sorted_texts(&sent("events")), {
        let mut got = drain(&sqs, &standard).await;
        got.sort();
        got
    });
    assert_eq!(
        drain(&sqs, &fifo).await,
        sent("orders").iter().map(|r| text(r)).collect::<Vec<_>>()
    );
    assert_eq!(sorted_texts(&sent("alerts")), {
        let mut got = drain(&sqs, &subscriber).await;
        got.sort();
        got
    });
    // DynamoDB: one item per output, keyed by its `id`.
    let scanned = dynamodb
        .scan()
        .table_name("all-kinds")
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = scanned
        .items()
        .iter()
        .filter_map(|item| item.get("id")?.as_s().ok().cloned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["items-0", "items-1", "items-2"]);
    // CloudWatch Logs, in order.
    let events = logs
        .get_log_events()
        .log_group_name("/all-kinds")
        .log_stream_name("stream")
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let messages: Vec<String> = events
        .events()
        .iter()
        .filter_map(|e| e.message().map(String::from))
        .collect();
    assert_eq!(
        messages,
        sent("logs").iter().map(|r| text(r)).collect::<Vec<_>>()
    );
    // CloudWatch metrics: the three values, summed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let statistics = json_call(
        &moto.endpoint(),
        CLOUDWATCH,
        "GetMetricStatistics",
        &json!({"Namespace": "AllKinds", "MetricName": "Price",
                "StartTime": now - 600, "EndTime": now + 600, "Period": 60,
                "Statistics": ["Sum", "SampleCount"]}),
    )
    .await
    .unwrap();
    let points = statistics["Datapoints"].as_array().unwrap();
    let total = |field: &str| points.iter().filter_map(|p| p[field].as_f64()).sum::<f64>();
    assert_eq!(
        (total("SampleCount"), total("Sum")),
        (3.0, 10.5 + 11.5 + 12.5)
    );
    // HTTP: one POST per output.
    let requests = http.wait_for_requests(3, Duration::from_secs(5)).unwrap();
    let mut bodies: Vec<String> = requests.iter().map(|r| text(&r.body)).collect();
    bodies.sort();
    assert_eq!(bodies, sorted_texts(&sent("api")));
    // PostgreSQL: one row per output.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let ids: Vec<String> = client
        .query("SELECT \"Id\" FROM ticks ORDER BY \"Id\"", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, ["ticks-0", "ticks-1", "ticks-2"]);
    // The local directory: one file per output.
    let files = crate::outputs(&env.out_dir(), "files");
    let expected: BTreeMap<String, Vec<u8>> = sent("files")
        .into_iter()
        .map(|r| (key("files", r), r.clone()))
        .collect();
    assert_eq!(files, expected);
}
