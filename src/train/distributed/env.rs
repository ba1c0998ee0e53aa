//! Which process of a data-parallel job this is, from the environment its launcher set:
//! torchrun's `RANK` / `WORLD_SIZE` / `LOCAL_RANK` / `MASTER_ADDR` / `MASTER_PORT` (also what
//! `studioize train --world-size N` sets for its children), or Slurm's `SLURM_PROCID` /
//! `SLURM_NTASKS` / `SLURM_LOCALID` under `srun`, with the master the first host of the job's
//! node list unless `MASTER_ADDR` names it.
use anyhow::{bail, Context, Result};

/// The port of the rendezvous when nothing names one (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// One process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub rank: usize,
    pub world: usize,
    /// The process's index on its machine: its GPU.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

/// The place this process's environment describes; `None` for a single process (no launcher,
/// or a world of one).
pub fn from_env() -> Result<Option<Place>> {
    from_vars(|k| std::env::var(k).ok())
}

/// As [`from_env`], reading variables through `var` (tests).
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Place>> {
    let num = |k: &str| -> Result<Option<usize>> {
        var(k)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("environment variable {k}='{v}' is not a number"))
            })
            .transpose()
    };
    let port = || -> Result<u16> {
        match var("MASTER_PORT") {
            None => Ok(DEFAULT_PORT),
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .with_context(|| format!("environment variable MASTER_PORT='{p}' is not a port")),
        }
    };
    let place = if let Some(world) = num("WORLD_SIZE")? {
        let Some(rank) = num("RANK")? else {
            bail!("environment variable WORLD_SIZE is set but RANK is not");
        };
        Place {
            rank,
            world,
            local_rank: num("LOCAL_RANK")?.unwrap_or(rank),
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: port()?,
        }
    } else if let (Some(world), Some(rank)) = (num("SLURM_NTASKS")?, num("SLURM_PROCID")?) {
        if world == 1 {
            // One task (a sweep's array task): not data-parallel.
            return Ok(None);
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) => a,
            None => {
                let list = var("SLURM_STEP_NODELIST")
                    .or_else(|| var("SLURM_JOB_NODELIST"))
                    .context("under Slurm with several tasks, MASTER_ADDR or SLURM_JOB_NODELIST must name the master node")?;
                first_host(&list)?
            }
        };
        Place {
            rank,
            world,
            local_rank: num("SLURM_LOCALID")?.unwrap_or(0),
            master_addr,
            master_port: port()?,
        }
    } else {
        return Ok(None);
    };
    if place.world == 0 || place.rank >= place.world {
        bail!(
            "rank {} is not below the world size {} (RANK / WORLD_SIZE or SLURM_PROCID / SLURM_NTASKS)",
            place.rank,
            place.world
        );
    }
    Ok((place.world > 1).then_some(place))
}

/// The first host of a Slurm node list (`node[03-05,09],gpu1` -> `node03`), as
/// `scontrol show hostnames` would list it first.
pub fn first_host(list: &str) -> Result<String> {
    let list = list.trim();
    let bad = || anyhow::anyhow!("cannot read the Slurm node list '{list}'");
    let first_entry_end = {
        let mut depth = 0;
        list.char_indices()
            .find(|&(_, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                c == ',' && depth == 0
            })
            .map_or(list.len(), |(i, _)| i)
    };
    let entry = &list[..first_entry_end];
    let host = match entry.split_once('[') {
        None => entry.to_string(),
        Some((prefix, rest)) => {
            let ranges = rest.strip_suffix(']').ok_or_else(bad)?;
            let first = ranges.split(',').next().ok_or_else(bad)?;
            let start = first.split('-').next().ok_or_else(bad)?;
            if start.is_empty() || !start.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            format!("{prefix}{start}")
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn place(vars: &[(&str, &str)]) -> Result<Option<Place>> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let p = place(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node01"),
            ("MASTER_PORT", "29555"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            Place {
                rank: 3,
                world: 4,
                local_rank: 1,
                master_addr: "node01".into(),
                master_port: 29555
            }
        );
    }

    #[test]
    fn single_process_without_launcher_or_world_of_one() {
        assert_eq!(place(&[]).unwrap(), None);
        assert_eq!(place(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
        // an sbatch job of one task (a sweep's array task) is not data-parallel
        let one = [("SLURM_NTASKS", "1"), ("SLURM_PROCID", "0")];
        assert_eq!(place(&one).unwrap(), None);
    }

    #[test]
    fn slurm_variables_and_node_list() {
        let p = place(&[
            ("SLURM_NTASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-10,12],login1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((p.rank, p.world, p.local_rank), (5, 8, 1));
        assert_eq!((p.master_addr.as_str(), p.master_port), ("gpu07", 29500));
        assert_eq!(first_host("a1,b2").unwrap(), "a1");
        assert_eq!(first_host("n[3]").unwrap(), "n3");
        assert!(first_host("n[x-y]").is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let e = place(&[("RANK", "2"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("not below the world size 2"), "{e}");
        let e = place(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("RANK='x'"), "{e}");
        let e = place(&[("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("RANK is not"), "{e}");
        let e = place(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "99999")]).unwrap_err();
        assert!(e.to_string().contains("MASTER_PORT"), "{e}");
    }
}
