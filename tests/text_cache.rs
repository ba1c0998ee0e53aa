//! `train.cache_text_embeddings`: the frozen text encoder's embeddings come from the cache
//! after a caption's first batch, equal to encoding it again; a whole run writes the same
//! losses with and without it.
mod common;

use common::tiny_experiment_tables;
use std::path::{Path, PathBuf};
use studioize::train::config::TrainSection;
use studioize::train::forward::Forward;
use tch::{Device, Kind};

fn experiment(dir: &Path, cache: bool) -> PathBuf {
    let tables = tiny_experiment_tables(dir, 8, 3);
    let text = format!(
        "{tables}[train]\nsteps = 6\nbatch_size = 2\nlearning_rate = 1e-3\nlr_schedule = \"constant\"
checkpoint_every = 0\nvalidate_every = 3\nvalidation_timesteps = 2\nseed = 7
cache_text_embeddings = {cache}\n[output]\ndir = \"{}\"\n",
        dir.join("run").display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn cached_embeddings_equal_encoding_again() {
    let sd = common::load_tiny_a();
    let t = TrainSection {
        cache_text_embeddings: true,
        ..TrainSection::default()
    };
    let forward = Forward::for_config(&t, Device::Cpu).unwrap();
    let batches = [
        vec!["a red mug", "a blue bottle"],
        vec!["a blue bottle", "", "a red mug"],
        vec!["a red mug", "a red mug"],
    ];
    for captions in batches {
        let owned: Vec<String> = captions.iter().map(|c| c.to_string()).collect();
        let cached = forward.embed(&sd, &owned, false).unwrap();
        let fresh = tch::no_grad(|| sd.embed_prompts(&captions)).unwrap();
        assert_eq!(cached.size(), fresh.size());
        let d = (&cached - &fresh).abs().max().double_value(&[]);
        let scale = fresh.abs().max().double_value(&[]);
        assert!(d <= 1e-6 * scale, "{captions:?}: differs by {d}");
        assert_eq!(cached.kind(), Kind::Float);
    }
    let cache = forward.text_cache.as_ref().unwrap().borrow();
    assert_eq!((cache.misses, cache.hits), (3, 4));
}

#[test]
fn a_whole_run_writes_the_same_losses() {
    let runs: Vec<_> = [false, true]
        .iter()
        .map(|&cache| {
            let dir = tempfile::tempdir().unwrap();
            let out = common::train_quiet(&experiment(dir.path(), cache), &[]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            let line = stderr.lines().find(|l| l.starts_with("text embeddings:"));
            match cache {
                // 6 steps of 2 rows over 6 training images' captions: at least 6 rows come round again
                true => {
                    let words: Vec<&str> = line.expect("the cache's summary").split(' ').collect();
                    let (encoded, reused): (u64, u64) =
                        (words[2].parse().unwrap(), words[5].parse().unwrap());
                    assert!(
                        encoded <= 6 && reused >= 6 && encoded + reused == 12,
                        "{}",
                        line.unwrap()
                    );
                }
                false => assert!(line.is_none(), "{stderr}"),
            }
            common::run_logs(&dir.path().join("run"))
        })
        .collect();
    common::assert_same_logs(&runs[0], &runs[1], 6);
}
