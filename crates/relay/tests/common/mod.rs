//! A `$VALKEY_SERVER` (`scripts/test.sh` sets it to the one `scripts/setup.sh` installs) on a
//! free loopback port, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Valkey {
    child: Child,
    pub port: u16,
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts one with `args` besides its port, and waits until it listens.
pub async fn valkey(args: &[&str]) -> Valkey {
    let bin = std::env::var("VALKEY_SERVER")
        .expect("VALKEY_SERVER: the valkey-server to run (scripts/test.sh sets it)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("valkey-server starts");
    // Owned at once: dropped (killed and waited for) on every path, the panic below included.
    let valkey = Valkey { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return valkey;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("valkey-server did not listen on {port}");
}
