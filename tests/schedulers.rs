//! Samplers against diffusers: schedules (timesteps, sigmas, init noise sigma) for every
//! sampler x spacing x steps, full trajectories with a fake model, img2img noising.
mod common;

use common::{assert_close, fixtures, read_refs};
use serde_json::Value;
use studioize::schedulers::{from_name, SchedulerConfig, SAMPLERS};
use tch::{Device, Kind, Tensor};

fn data() -> Value {
    let p = fixtures().join("schedulers").join("schedules.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn config(over: &Value) -> SchedulerConfig {
    let mut cfg = SchedulerConfig::default();
    if let Some(s) = over.get("timestep_spacing").and_then(Value::as_str) {
        cfg.timestep_spacing = Some(s.into());
    }
    if let Some(s) = over.get("prediction_type").and_then(Value::as_str) {
        cfg.prediction_type = s.into();
    }
    if let Some(e) = over.get("eta").and_then(Value::as_f64) {
        cfg.eta = e;
    }
    cfg
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_vec_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rtol * w.abs().max(1e-3),
            "{what}[{i}]: {g} vs {w}\n{got:?}\n{want:?}"
        );
    }
}

#[test]
fn schedules_match_diffusers() {
    let d = data();
    let cases = d["schedules"].as_array().unwrap();
    assert_eq!(cases.len(), SAMPLERS.len() * 3 * 3);
    for c in cases {
        let name = c["sampler"].as_str().unwrap();
        let spacing = c["spacing"].as_str().unwrap();
        let steps = c["steps"].as_u64().unwrap() as usize;
        let what = format!("{name} {spacing} {steps}");
        let mut s = from_name(
            name,
            &config(&serde_json::json!({"timestep_spacing": spacing})),
        )
        .unwrap();
        s.set_timesteps(steps).unwrap();
        assert_vec_close(
            &format!("{what} timesteps"),
            s.timesteps(),
            &floats(&c["timesteps"]),
            1e-6,
        );
        if !c["sigmas"].is_null() {
            assert_vec_close(
                &format!("{what} sigmas"),
                s.sigmas().unwrap(),
                &floats(&c["sigmas"]),
                1e-6,
            );
        }
        let want = c["init_noise_sigma"].as_f64().unwrap();
        assert!(
            (s.init_noise_sigma() - want).abs() <= 1e-6 * want,
            "{what} init sigma {} vs {want}",
            s.init_noise_sigma()
        );
    }
}

/// The fake model of the fixture script: 0.3 * scaled sample + 0.05 * sin(t / 100).
fn fake_model(x: &Tensor, t: f64) -> Tensor {
    x * 0.3 + 0.05 * ((t as f32 / 100.0).sin() as f64)
}

#[test]
fn trajectories_match_diffusers() {
    let d = data();
    let refs = read_refs(
        &fixtures()
            .join("schedulers")
            .join("trajectories.safetensors"),
    );
    for run in d["runs"].as_array().unwrap() {
        let name = run["sampler"].as_str().unwrap();
        let steps = run["steps"].as_u64().unwrap() as usize;
        let seed = run["seed"].as_i64().unwrap();
        let mut s = from_name(name, &config(run)).unwrap();
        s.set_timesteps(steps).unwrap();
        tch::manual_seed(seed);
        let mut x = Tensor::randn([1, 4, 8, 8], (Kind::Float, Device::Cpu)) * s.init_noise_sigma();
        let ts = s.timesteps().to_vec();
        for (i, &t) in ts.iter().enumerate() {
            let out = fake_model(&s.scale_model_input(&x, i), t);
            x = s.step(&out, i, &x).unwrap();
        }
        assert_close(
            &format!("{run}"),
            &x,
            &refs[run["key"].as_str().unwrap()],
            1e-4,
        );
    }
}

#[test]
fn samplers_give_different_trajectories() {
    // The comparison above could not tell samplers apart if they all agreed.
    let refs = read_refs(
        &fixtures()
            .join("schedulers")
            .join("trajectories.safetensors"),
    );
    let d = data();
    let runs: Vec<&Value> = d["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["steps"] == 10)
        .take(7)
        .collect();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let (ta, tb) = (
                &refs[a["key"].as_str().unwrap()],
                &refs[b["key"].as_str().unwrap()],
            );
            assert!(
                common::rel_err(ta, tb) > 1e-3,
                "{} vs {}",
                a["sampler"],
                b["sampler"]
            );
        }
    }
}

#[test]
fn img2img_begin_index_and_noising_match_diffusers() {
    let d = data();
    let refs = read_refs(
        &fixtures()
            .join("schedulers")
            .join("trajectories.safetensors"),
    );
    for c in d["img2img"].as_array().unwrap() {
        let name = c["sampler"].as_str().unwrap();
        let steps = c["steps"].as_u64().unwrap() as usize;
        let mut s = from_name(name, &SchedulerConfig::default()).unwrap();
        s.set_timesteps(steps).unwrap();
        let begin = s.begin_index_for_strength(c["strength"].as_f64().unwrap());
        assert_eq!(begin as u64, c["begin"].as_u64().unwrap(), "{c}");
        let key = c["key"].as_str().unwrap();
        let noised = s.add_noise(
            &refs[&format!("{key}_x0")],
            &refs[&format!("{key}_noise")],
            begin,
        );
        assert_close(key, &noised, &refs[key], 1e-5);
    }
}

#[test]
fn bad_names_and_values_are_errors() {
    let cfg = SchedulerConfig::default();
    let err = from_name("heun", &cfg).err().unwrap().to_string();
    assert!(
        err.contains("unknown sampler 'heun'") && err.contains("dpmpp-2m"),
        "{err}"
    );
    let mut bad = cfg.clone();
    bad.beta_schedule = "cosine".into();
    assert!(from_name("ddim", &bad)
        .err()
        .unwrap()
        .to_string()
        .contains("beta_schedule"));
    let mut bad = cfg.clone();
    bad.timestep_spacing = Some("random".into());
    assert!(from_name("euler", &bad)
        .err()
        .unwrap()
        .to_string()
        .contains("timestep_spacing"));
    let mut s = from_name("ddim", &cfg).unwrap();
    assert!(s
        .set_timesteps(0)
        .unwrap_err()
        .to_string()
        .contains("at least 1"));
    let mut cfg2 = cfg.clone();
    cfg2.class_name = Some("HeunDiscreteScheduler".into());
    assert!(studioize::schedulers::from_config(&cfg2)
        .err()
        .unwrap()
        .to_string()
        .contains("HeunDiscreteScheduler"));
}
