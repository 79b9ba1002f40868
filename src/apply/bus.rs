//! Talking to systemd over D-Bus: what it says about units, and the jobs, reload and cleaning
//! `apply` asks of it. Blocking calls; job results come from `JobRemoved` signals.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use zbus::blocking::{Connection, MessageIterator, connection};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::decide::{Activity, Live};

mod relay;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// PID 1's own socket, which systemctl uses as root: it works without a D-Bus daemon.
const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// How long a cleaning may take before `apply` stops waiting for it.
const CLEAN_TIMEOUT: Duration = Duration::from_secs(120);

/// How many signals may wait unread: every job's `JobRemoved`, dependencies' included.
const MAX_QUEUED: usize = 4096;

/// A connection to systemd (PID 1).
pub struct Systemd {
    conn: Connection,
    /// `JobRemoved` signals as they come: (job path, unit, result).
    jobs: Receiver<(String, String, String)>,
}

/// One job `apply` started and waits for.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's object path.
    pub path: String,
}

type Result<T> = std::result::Result<T, String>;

impl Systemd {
    /// Connect through PID 1's private socket (root), else through the system bus; the error
    /// says why neither worked.
    pub fn connect() -> Result<Systemd> {
        let private = relay::connect(PRIVATE_SOCKET)
            .map_err(|e| e.to_string())
            .and_then(|stream| {
                // A std stream: this build has no tokio, which the deprecation is about.
                #[allow(deprecated)]
                let builder = connection::Builder::unix_stream(stream);
                builder
                    .p2p()
                    .max_queued(MAX_QUEUED)
                    .build()
                    .map_err(|e| e.to_string())
            });
        let conn = match private {
            Ok(c) => c,
            Err(private) => {
                let bus = connection::Builder::system()
                    .and_then(|b| b.max_queued(MAX_QUEUED).build())
                    .map_err(|e| {
                        format!(
                            "Cannot talk to systemd: {PRIVATE_SOCKET}: {private}; system bus: {e}"
                        )
                    })?;
                // On the bus, PID 1 sends job signals only to subscribers.
                bus.call_method(Some(DEST), PATH, Some(MANAGER), "Subscribe", &())
                    .map_err(|e| format!("Cannot subscribe to systemd's signals: {e}"))?;
                bus
            }
        };
        let jobs = watch_jobs(&conn)?;
        Ok(Systemd { conn, jobs })
    }

    fn call<B>(&self, path: &str, iface: &str, method: &str, body: &B) -> Result<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DEST), path, Some(iface), method, body)
            .map_err(|e| match e {
                zbus::Error::MethodError(_, Some(text), _) => text,
                e => e.to_string(),
            })
    }

    fn property(&self, path: &str, name: &str) -> Result<OwnedValue> {
        let reply = self.call(path, PROPERTIES, "Get", &(UNIT, name))?;
        reply.body().deserialize().map_err(|e| e.to_string())
    }

    fn unit_path(&self, unit: &str) -> Result<String> {
        let reply = self.call(PATH, MANAGER, "LoadUnit", &(unit,))?;
        let path: OwnedObjectPath = reply.body().deserialize().map_err(|e| e.to_string())?;
        Ok(path.as_str().to_string())
    }

    /// What systemd says about `unit` (loading it if it has to, as `systemctl show` does).
    pub fn live(&self, unit: &str) -> Result<Live> {
        let path = self.unit_path(unit)?;
        let text = |name| -> Result<String> {
            String::try_from(self.property(&path, name)?).map_err(|e| e.to_string())
        };
        let activity = Activity::from_active_state(&text("ActiveState")?);
        let loaded = text("LoadState")? == "loaded";
        let triggered_by = Vec::<String>::try_from(self.property(&path, "TriggeredBy")?)
            .map_err(|e| e.to_string())?;
        Ok(Live {
            activity,
            loaded,
            triggered_by,
        })
    }

    /// The loaded instances of `template` (`app@.service`: `app@1.service`, ...).
    pub fn instances(&self, template: &str) -> Result<Vec<String>> {
        let Some((prefix, suffix)) = template.split_once("@.") else {
            return Ok(Vec::new());
        };
        let pattern = format!("{prefix}@*.{suffix}");
        let reply = self.call(
            PATH,
            MANAGER,
            "ListUnitsByPatterns",
            &(Vec::<&str>::new(), vec![pattern.as_str()]),
        )?;
        type Listed = (
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        );
        let units: Vec<Listed> = reply.body().deserialize().map_err(|e| e.to_string())?;
        Ok(units.into_iter().map(|u| u.0).collect())
    }

    /// Queue `StartUnit`, `StopUnit` or `RestartUnit` for `unit` (mode `replace`).
    pub fn job(&self, method: &str, unit: &str) -> Result<Job> {
        let reply = self.call(PATH, MANAGER, method, &(unit, "replace"))?;
        let path: OwnedObjectPath = reply.body().deserialize().map_err(|e| e.to_string())?;
        Ok(Job {
            path: path.as_str().to_string(),
        })
    }

    /// Wait until every job of `jobs` is done or `timeout` passed; each job's result
    /// (`done`, `failed`, `timeout`, ...), or `None` if it did not end in time.
    pub fn wait(&self, jobs: &[Job], timeout: Duration) -> Vec<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut results: BTreeMap<&str, String> = BTreeMap::new();
        while results.len() < jobs.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((path, _unit, result)) = self.jobs.recv_timeout(left) else {
                break;
            };
            if let Some(job) = jobs.iter().find(|j| j.path == path) {
                results.insert(&job.path, result);
            }
        }
        jobs.iter()
            .map(|j| results.get(j.path.as_str()).cloned())
            .collect()
    }

    /// Reload systemd's units (`daemon-reload`), returning once it is done.
    pub fn reload(&self) -> Result<()> {
        self.call(PATH, MANAGER, "Reload", &()).map(|_| ())
    }

    /// Remove `unit`'s state, cache, logs and runtime directories, as `portablectl detach
    /// --clean` asks (`CleanUnit` with `all`), and wait until systemd is done.
    pub fn clean(&self, unit: &str) -> Result<()> {
        self.call(PATH, MANAGER, "CleanUnit", &(unit, vec!["all"]))?;
        let path = self.unit_path(unit)?;
        let deadline = Instant::now() + CLEAN_TIMEOUT;
        // The unit is in `maintenance` (sub-state `cleaning`) until its cleaning process ends.
        loop {
            let state = String::try_from(self.property(&path, "ActiveState")?)
                .map_err(|e| e.to_string())?;
            match state.as_str() {
                "maintenance" if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                "maintenance" => return Err("still cleaning after 120 s".to_string()),
                "failed" => {
                    let result = self.property(&path, "Result").ok();
                    let result = result.and_then(|r| String::try_from(r).ok());
                    return Err(format!(
                        "cleaning failed ({})",
                        result.unwrap_or_else(|| "?".into())
                    ));
                }
                _ => return Ok(()),
            }
        }
    }
}

/// `JobRemoved` signals, read on a thread of their own so that waiting can time out; the
/// subscription exists before any job is queued, so no job's end is missed.
fn watch_jobs(conn: &Connection) -> Result<Receiver<(String, String, String)>> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(MANAGER)
        .and_then(|b| b.member("JobRemoved"))
        .and_then(|b| b.path(PATH))
        .map_err(|e| e.to_string())?
        .build();
    let signals = MessageIterator::for_match_rule(rule, conn, Some(MAX_QUEUED))
        .map_err(|e| format!("Cannot watch systemd's jobs: {e}"))?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for msg in signals.flatten() {
            let body = msg.body();
            let Ok((_, job, unit, result)) =
                body.deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if tx.send((job.as_str().to_string(), unit, result)).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
