//! The invocation handler: built once at cold start, then one call per event.
//!
//! Decode the event; run every decodable record through the plugin pipeline on a thread with
//! room for the wasm stack; deliver the outputs; answer every record `Ok` or `DeliveryFailed`
//! in request order. Work is cut off at the deadline so the answer is sent before Lambda's
//! timeout would discard it.

use crate::config::Config;
use crate::contract::{DeliveryResult, Event, RecordResponse, Response};
use crate::destinations::{Destinations, Envelope};
use crate::failure::{Cause, Failure};
use crate::pipeline::{self, Batch, BatchRecord, DEFAULT_DESTINATION, Item, Origin, Outcomes};
use crate::plugin_loader;
use crate::sandbox::{LoadedPlugin, Sandbox};
use crate::state::{DurableStore, FileStore};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

/// Stack for the thread that runs plugins: the wasm stack limit plus room for the host frames
/// below and above it.
const HOST_STACK_HEADROOM: usize = 8 << 20;

/// The response to an event, with why each failed record failed (index-aligned).
#[derive(Debug, Clone)]
pub struct Handled {
    /// What KDA gets.
    pub response: Response,
    /// `Some` for each record answered `DeliveryFailed`.
    pub failures: Vec<Option<Failure>>,
}

/// Everything built once per process: the engine, compiled plugins, destinations.
#[derive(Debug)]
pub struct Processor {
    shared: Arc<Shared>,
    destinations: Destinations,
    deadline_margin: Duration,
    threads: PluginThreads,
}

#[derive(Debug)]
struct Shared {
    sandbox: Sandbox,
    stages: Vec<LoadedPlugin>,
    store: Arc<dyn DurableStore>,
}

impl Processor {
    /// Compiles the configured plugins and binds the destinations. Every error here is an
    /// init error an operator can act on.
    pub async fn new(config: &Config) -> Result<Self> {
        let started = Instant::now();
        let sandbox = Sandbox::new(&config.limits, config.instance_reuse)?;
        let stages = plugin_loader::load_plugins(config, &sandbox).await?;
        let processor = Self::from_parts(config, sandbox, stages).await?;
        // One line per start with the init time, for operators and the cold-start benchmark.
        tracing::info!(
            stages = config.plugins.len(),
            init_ms = started.elapsed().as_secs_f64() * 1e3,
            "ready for the first event"
        );
        Ok(processor)
    }

    /// Builds a processor from plugins already loaded into `sandbox`.
    pub async fn from_parts(
        config: &Config,
        sandbox: Sandbox,
        stages: Vec<LoadedPlugin>,
    ) -> Result<Self> {
        let destinations = Destinations::from_config(
            config.destinations.as_deref(),
            config.output_dir.as_ref(),
            &config.aws,
        )
        .await?;
        Ok(Processor {
            threads: PluginThreads {
                stack_size: sandbox.limits().stack_bytes + HOST_STACK_HEADROOM,
                idle: Mutex::default(),
            },
            shared: Arc::new(Shared {
                sandbox,
                stages,
                store: Arc::new(FileStore::new(&config.state_dir)),
            }),
            destinations,
            deadline_margin: config.deadline_margin,
        })
    }

    /// Handles one event given as JSON text, with `deadline` the moment the caller stops
    /// waiting (Lambda's). Errors only when the event is not a KDA output event.
    pub async fn handle_json(&self, text: &str, deadline: Instant) -> Result<Response> {
        let event = Event::from_json(text)?;
        Ok(self.handle(event, deadline).await.response)
    }

    /// Handles one decoded event. Every record is answered, in order.
    pub async fn handle(&self, event: Event, deadline: Instant) -> Handled {
        let started = Instant::now();
        let margin = self.deadline_margin;
        // Plugins stop early enough to leave time for delivery; delivery stops before the
        // caller does.
        let process_by = deadline.checked_sub(margin).unwrap_or(started);
        let deliver_by = deadline.checked_sub(margin / 4).unwrap_or(started);

        let batch = Batch {
            source_arn: event.application_arn.clone(),
            source_kind: "kda-output",
            records: event
                .records
                .iter()
                .map(|r| BatchRecord {
                    record_id: r.record_id.clone(),
                    retry_hint: r.retry_hint,
                })
                .collect(),
        };
        let mut outcomes: Outcomes = vec![None; event.records.len()];
        let mut items = Vec::with_capacity(event.records.len());
        let mut bytes_in = 0;
        for (i, record) in event.records.into_iter().enumerate() {
            let origin = Origin::Record(u32::try_from(i).unwrap_or(u32::MAX));
            match record.data {
                Ok(data) => {
                    bytes_in += data.len();
                    items.push(Item {
                        origin,
                        destination: DEFAULT_DESTINATION.to_string(),
                        data,
                    });
                }
                Err(reason) => {
                    let failure = Failure::new(Cause::BadInput, reason);
                    pipeline::fail(&batch, &mut outcomes, &origin, "decode", &failure);
                }
            }
        }

        let batch = Arc::new(batch);
        let (items, mut outcomes) = match self
            .run_pipeline(batch.clone(), items, outcomes.clone(), process_by)
            .await
        {
            Ok(result) => result,
            Err(e) => {
                // The plugin thread itself failed (it could not start): fail the batch.
                let failure = Failure::new(Cause::Trap, format!("{e:#}"));
                let all = Origin::Group((0..batch.records.len() as u32).collect());
                pipeline::fail(&batch, &mut outcomes, &all, "host", &failure);
                (Vec::new(), outcomes)
            }
        };
        let bytes_out: usize = items.iter().map(|i| i.data.len()).sum();
        let outputs = items.len();
        self.deliver(&batch, items, &mut outcomes, deliver_by).await;

        let mut failed_by_cause: BTreeMap<&str, usize> = BTreeMap::new();
        let records = batch
            .records
            .iter()
            .zip(&outcomes)
            .map(|(record, outcome)| RecordResponse {
                record_id: record.record_id.clone(),
                result: match outcome {
                    None => DeliveryResult::Ok,
                    Some(f) => {
                        *failed_by_cause.entry(f.cause.as_str()).or_default() += 1;
                        DeliveryResult::DeliveryFailed
                    }
                },
            })
            .collect::<Vec<_>>();
        let failed: usize = failed_by_cause.values().sum();
        tracing::info!(
            invocation_id = event.invocation_id,
            records = records.len(),
            ok = records.len() - failed,
            delivery_failed = failed,
            failed_by_cause = ?failed_by_cause,
            outputs,
            bytes_in,
            bytes_out,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "invocation summary"
        );
        Handled {
            response: Response { records },
            failures: outcomes,
        }
    }

    /// Runs the stages on a dedicated thread: wasm needs a deep native stack, and plugin calls
    /// are CPU-bound work that must not stall the async runtime.
    async fn run_pipeline(
        &self,
        batch: Arc<Batch>,
        items: Vec<Item>,
        mut outcomes: Outcomes,
        deadline: Instant,
    ) -> Result<(Vec<Item>, Outcomes)> {
        let shared = self.shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = self.threads.run(Box::new(move || {
            let items = pipeline::run(
                &shared.sandbox,
                &shared.stages,
                &shared.store,
                &batch,
                items,
                &mut outcomes,
                deadline,
            );
            let _ = tx.send((items, outcomes));
        }))?;
        let result = rx.await;
        // A thread whose job panicked has ended; only one that answered is kept for reuse.
        if result.is_ok() {
            self.threads.release(thread);
        }
        result.map_err(|_| anyhow!("the plugin thread ended without an answer"))
    }

    /// Delivers the final items, destinations concurrently, and fails the records whose
    /// outputs were not accepted.
    async fn deliver(
        &self,
        batch: &Batch,
        items: Vec<Item>,
        outcomes: &mut Outcomes,
        deadline: Instant,
    ) {
        let mut by_destination: BTreeMap<String, (Vec<Envelope>, Vec<Origin>)> = BTreeMap::new();
        for item in items {
            // Looked up before inserting, so the name is copied once per destination, not
            // once per output.
            if !by_destination.contains_key(&item.destination) {
                by_destination.insert(item.destination.clone(), Default::default());
            }
            let entry = by_destination
                .get_mut(&item.destination)
                .expect("inserted above when missing");
            entry.0.push(Envelope::new(&item.destination, item.data));
            entry.1.push(item.origin);
        }

        let mut deliveries = Vec::new();
        for (name, (envelopes, origins)) in by_destination {
            match self.destinations.get(&name) {
                None => {
                    let failure = Failure::new(
                        Cause::Destination,
                        format!(
                            "no destination is bound to the name {name:?} (bound: {:?}); set DESTINATIONS",
                            self.destinations.names()
                        ),
                    );
                    for origin in &origins {
                        pipeline::fail(batch, outcomes, origin, "deliver", &failure);
                    }
                }
                Some(destination) => {
                    let destination = destination.clone();
                    deliveries.push(async move {
                        let results = tokio::time::timeout_at(
                            deadline.into(),
                            destination.deliver(&envelopes, deadline),
                        )
                        .await;
                        (name, origins, results)
                    });
                }
            }
        }

        for (name, origins, results) in futures::future::join_all(deliveries).await {
            match results {
                Ok(results) => {
                    for (origin, result) in origins.iter().zip(results) {
                        if let Err(e) = result {
                            let failure = Failure::new(
                                Cause::Destination,
                                format!("destination {name:?}: {e}"),
                            );
                            pipeline::fail(batch, outcomes, origin, "deliver", &failure);
                        }
                    }
                }
                Err(_) => {
                    let failure = Failure::new(
                        Cause::Deadline,
                        format!("destination {name:?} did not finish before the deadline"),
                    );
                    for origin in &origins {
                        pipeline::fail(batch, outcomes, origin, "deliver", &failure);
                    }
                }
            }
        }
    }
}

/// Work for a plugin thread.
type Job = Box<dyn FnOnce() + Send>;

/// Threads that run plugins, kept between invocations: starting a thread with a stack this deep
/// costs tens of µs, which a batch of one record would otherwise pay every time. Concurrent
/// invocations each get a thread of their own.
#[derive(Debug)]
struct PluginThreads {
    stack_size: usize,
    /// The idle threads' job queues.
    idle: Mutex<Vec<mpsc::Sender<Job>>>,
}

impl PluginThreads {
    /// Runs `job` on an idle thread, or on a new one. Returns the thread's queue, to
    /// [`release`](Self::release) once the job has answered.
    fn run(&self, mut job: Job) -> Result<mpsc::Sender<Job>> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(queue) = idle else { break };
            match queue.send(job) {
                Ok(()) => return Ok(queue),
                // That thread has ended (its last job panicked): try another.
                Err(mpsc::SendError(returned)) => job = returned,
            }
        }
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("plugins".into())
            .stack_size(self.stack_size)
            .spawn(move || {
                // Ends when the processor, and with it every queue, is dropped.
                while let Ok(job) = jobs.recv() {
                    job();
                }
            })
            .context("starting the plugin thread")?;
        queue
            .send(job)
            .map_err(|_| anyhow!("the plugin thread ended before its first job"))?;
        Ok(queue)
    }

    /// Makes a thread that finished its job available again.
    fn release(&self, queue: mpsc::Sender<Job>) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(queue);
    }
}
