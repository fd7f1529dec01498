//! The coordinator's view of the worker processes. One process may hold at most as many
//! sockets as its open-files limit allows (20,000 in the sandbox this was written in, with no
//! way to raise the hard limit), so the sockets live in `bench-loadgen worker` children: socket
//! i belongs to worker i mod W. The coordinator talks to them over their stdin/stdout, one JSON
//! line per command and per answer.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use gateway_bench::hist::Snapshot;
use gateway_bench::Result;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: String,
}

pub struct Workers {
    list: Vec<Worker>,
}

/// The sum of every worker's counters.
#[derive(Default)]
pub struct Stats {
    pub connected: u64,
    pub gave_up: u64,
    pub retries: u64,
    pub dropped: u64,
    pub delivered: u64,
    pub unstamped: u64,
    pub failures: BTreeMap<String, u64>,
    pub room_members: Vec<u64>,
    pub latency: Option<Snapshot>,
    pub connect_time: Option<Snapshot>,
}

fn sparse(v: &Value) -> Vec<(usize, u64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_u64()? as usize, p.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

impl Workers {
    /// Starts `n` workers with `common` (the coordinator's own options) plus their share.
    pub async fn spawn(
        common: &[String],
        n: usize,
        per_user: usize,
        inflight: usize,
    ) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut list = Vec::with_capacity(n);
        for k in 0..n {
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(common)
                .args(["--worker", &format!("{k}/{n}")])
                .args(["--per-user", &per_user.to_string()])
                .args(["--inflight", &inflight.div_ceil(n).max(1).to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start a worker: {e}"))?;
            let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
            let stdin = child.stdin.take().ok_or("worker without stdin")?;
            let stdout = child.stdout.take().ok_or("worker without stdout")?;
            list.push(Worker {
                _child: child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
                pid,
            });
        }
        let mut w = Workers { list };
        // Every worker has read its users file once it answers.
        w.call(&json!({"cmd": "stats"})).await?;
        Ok(w)
    }

    pub fn pids(&self) -> Vec<String> {
        self.list.iter().map(|w| w.pid.clone()).collect()
    }

    /// Sends `cmd` to every worker, then collects their answers.
    async fn call(&mut self, cmd: &Value) -> Result<Vec<Value>> {
        let line = format!("{cmd}\n");
        for w in &mut self.list {
            w.stdin.write_all(line.as_bytes()).await?;
            w.stdin.flush().await?;
        }
        let mut out = Vec::with_capacity(self.list.len());
        for w in &mut self.list {
            let answer = tokio::time::timeout(Duration::from_secs(120), w.stdout.next_line())
                .await
                .map_err(|_| "a worker did not answer within 120 s")??
                .ok_or("a worker exited")?;
            let v: Value = serde_json::from_str(&answer)?;
            if let Some(e) = v.get("error") {
                return Err(format!("worker: {e}").into());
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Starts sockets `from..to` (each worker its own), each after a random delay < `spread`.
    pub async fn connect(&mut self, from: usize, to: usize, spread: Duration) -> Result<()> {
        self.call(
            &json!({"cmd": "connect", "from": from, "to": to, "spread_s": spread.as_secs_f64()}),
        )
        .await?;
        Ok(())
    }

    pub async fn close_all(&mut self) -> Result<()> {
        self.call(&json!({"cmd": "close"})).await?;
        Ok(())
    }

    pub async fn reset(&mut self) -> Result<()> {
        self.call(&json!({"cmd": "reset"})).await?;
        Ok(())
    }

    pub async fn stats(&mut self, full: bool) -> Result<Stats> {
        let answers = self.call(&json!({"cmd": "stats", "full": full})).await?;
        let mut s = Stats::default();
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        for a in &answers {
            s.connected += n(a, "connected");
            s.gave_up += n(a, "gave_up");
            s.retries += n(a, "retries");
            s.dropped += n(a, "dropped");
            s.delivered += n(a, "delivered");
            s.unstamped += n(a, "unstamped");
            if let Some(f) = a["failures"].as_object() {
                for (k, v) in f {
                    *s.failures.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
            if let Some(m) = a["room_members"].as_array() {
                s.room_members.resize(s.room_members.len().max(m.len()), 0);
                for (i, c) in m.iter().enumerate() {
                    s.room_members[i] += c.as_u64().unwrap_or(0);
                }
            }
            if full {
                s.latency
                    .get_or_insert_with(Snapshot::empty)
                    .add_sparse(sparse(&a["latency"]));
                s.connect_time
                    .get_or_insert_with(Snapshot::empty)
                    .add_sparse(sparse(&a["connect_time"]));
            }
        }
        Ok(s)
    }

    pub async fn exit(mut self) {
        let _ = self.call(&json!({"cmd": "close"})).await;
        for w in &mut self.list {
            let _ = w.stdin.write_all(b"{\"cmd\":\"exit\"}\n").await;
            let _ = w.stdin.flush().await;
        }
        for w in &mut self.list {
            let _ = tokio::time::timeout(Duration::from_secs(10), w._child.wait()).await;
        }
    }
}
