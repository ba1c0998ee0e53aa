//! `studioize train CONFIG --world-size N`: N processes of this binary on this machine, each
//! told its place through torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`), their output forwarded line by line with a `[rank r]`
//! prefix. The command fails when any of them fails; once one has failed, the others get a
//! short grace period to fail on their own (their collectives break at once) and are then
//! killed, so that nothing is left waiting.
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the other processes may take to end after one has failed.
const GRACE: Duration = Duration::from_secs(10);

/// The arguments of this process without `--world-size N` / `--world-size=N`: the children's.
pub fn child_args(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match a.to_str() {
            Some("--world-size") => skip_next = true,
            Some(s) if s.starts_with("--world-size=") => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Runs `args` (a `studioize` command line without the program name) as `world` processes
/// and waits for all of them. With `cpu`, each gets an equal share of the cores as its
/// `OMP_NUM_THREADS` (unless that is set).
pub fn run(world: usize, args: &[OsString], cpu: bool) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program to start its ranks")?;
    let port = free_port()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut children = Vec::new();
    let mut pumps = Vec::new();
    for rank in 0..world {
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if cpu && std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", (threads / world).max(1).to_string());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut children);
                bail!("cannot start rank {rank} ({}): {e}", exe.display());
            }
        };
        let prefix = format!("[rank {rank}] ");
        if let Some(out) = child.stdout.take() {
            pumps.push(pump(out, prefix.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(pump(err, prefix, true));
        }
        children.push(child);
    }
    let result = wait_all(&mut children);
    for p in pumps {
        let _ = p.join();
    }
    result
}

/// A port on the loopback interface that was free a moment ago (rank 0's store binds it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for the ranks' rendezvous")?;
    Ok(l.local_addr()?.port())
}

/// Forwards a child's output, each line prefixed.
fn pump(stream: impl Read + Send + 'static, prefix: String, stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
            let text = format!("{prefix}{}\n", String::from_utf8_lossy(&line));
            let _ = if stderr {
                std::io::stderr().write_all(text.as_bytes())
            } else {
                std::io::stdout().write_all(text.as_bytes())
            };
        }
    })
}

/// Waits for every child; after the first failure the rest get [`GRACE`], then are killed.
fn wait_all(children: &mut [Child]) -> Result<()> {
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut first_failure: Option<(usize, Instant)> = None;
    while status.iter().any(Option::is_none) {
        for (rank, c) in children.iter_mut().enumerate() {
            if status[rank].is_none() {
                if let Some(s) = c.try_wait()? {
                    status[rank] = Some(s);
                    if !s.success() && first_failure.is_none() {
                        first_failure = Some((rank, Instant::now()));
                    }
                }
            }
        }
        if let Some((_, at)) = first_failure {
            if at.elapsed() > GRACE {
                kill_all(children);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match first_failure {
        None => Ok(()),
        Some((rank, _)) => {
            let failed: Vec<String> = status
                .iter()
                .enumerate()
                .filter_map(|(r, s)| {
                    s.filter(|s| !s.success())
                        .map(|s| format!("rank {r} ({s})"))
                })
                .collect();
            bail!(
                "rank {rank} failed first; failed: {} (see the [rank N] messages above)",
                failed.join(", ")
            )
        }
    }
}

fn kill_all(children: &mut [Child]) {
    for c in children {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_size_is_dropped_from_the_children_args() {
        let args: Vec<OsString> = [
            "train",
            "c.toml",
            "--world-size",
            "2",
            "--quiet",
            "--world-size=3",
            "--set",
            "a=1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let kept: Vec<OsString> = ["train", "c.toml", "--quiet", "--set", "a=1"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(child_args(&args), kept);
    }
}
