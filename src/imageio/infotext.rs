//! AUTOMATIC1111's "infotext": the text its PNGs carry in a `parameters` chunk, which A1111's
//! PNG-info tab, ComfyUI and image browsers parse. Layout: the prompt (any number of lines),
//! then `Negative prompt: ...` when there is one, then one line of `Key: value` pairs joined by
//! `, ` (`Steps`, `Sampler`, `CFG scale`, `Seed`, `Size`, `Model`, `Denoising strength`, ...).
//! A value holding a comma, colon, quote or newline is written as a JSON string, as A1111 does.
use serde_json::Value;

/// A1111's name of a studioize sampler.
pub fn sampler_name(sampler: &str) -> &str {
    match sampler {
        "pndm" => "PLMS",
        "ddim" => "DDIM",
        "euler" => "Euler",
        "euler-a" => "Euler a",
        "dpmpp-2m" => "DPM++ 2M",
        "dpmpp-2m-karras" => "DPM++ 2M Karras",
        "lms" => "LMS",
        other => other,
    }
}

fn quote(v: &str) -> String {
    if v.contains([',', ':', '\n', '"']) {
        Value::String(v.to_string()).to_string()
    } else {
        v.to_string()
    }
}

fn number(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The model's name as A1111 shows it: the folder name or file stem.
fn model_name(v: &Value) -> Option<String> {
    let p = std::path::Path::new(v.as_str()?);
    let name = if p.extension().is_some_and(|e| e == "safetensors") {
        p.file_stem()
    } else {
        p.file_name()
    };
    name.map(|n| n.to_string_lossy().into_owned())
}

/// The infotext of a generation's parameters record (as `generate` / `transform` write it).
pub fn format(p: &Value) -> String {
    let mut out = p["prompt"].as_str().unwrap_or("").to_string();
    // A1111 names the LoRAs of a generation in its prompt, `<lora:NAME:WEIGHT>`.
    for l in p["loras"].as_array().into_iter().flatten() {
        if let (Some(name), Some(w)) = (l["name"].as_str(), number(&l["scale"])) {
            out.push_str(&format!(" <lora:{name}:{w}>"));
        }
    }
    if let Some(neg) = p["negative_prompt"].as_str().filter(|s| !s.is_empty()) {
        out.push_str("\nNegative prompt: ");
        out.push_str(neg);
    }
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(v) = number(&p["steps"]) {
        fields.push(("Steps", v));
    }
    if let Some(s) = p["sampler"].as_str() {
        fields.push(("Sampler", sampler_name(s).to_string()));
    }
    if let Some(v) = number(&p["guidance"]) {
        fields.push(("CFG scale", v));
    }
    if let Some(v) = number(&p["seed"]) {
        fields.push(("Seed", v));
    }
    if let (Some(w), Some(h)) = (number(&p["width"]), number(&p["height"])) {
        fields.push(("Size", format!("{w}x{h}")));
    }
    if let Some(m) = model_name(&p["model"]) {
        fields.push(("Model", m));
    }
    if let Some(v) = number(&p["strength"]) {
        fields.push(("Denoising strength", v));
    }
    let batch = p["num_images"].as_u64().or(p["variations"].as_u64());
    if let (Some(n), Some(i)) = (batch.filter(|&n| n > 1), p["index"].as_u64()) {
        fields.push(("Batch size", n.to_string()));
        fields.push(("Batch pos", i.to_string()));
    }
    // A1111 lists the embeddings a prompt used as `TI hashes: "name: hash, ..."`.
    let ti: Vec<String> = (p["embeddings"].as_array().into_iter().flatten())
        .filter_map(|e| Some((e["token"].as_str()?, e["hash"].as_str()?)))
        .map(|(t, h)| format!("{}: {h}", t.replace([':', ','], "")))
        .collect();
    if !ti.is_empty() {
        fields.push(("TI hashes", ti.join(", ")));
    }
    if let Some(v) = p["studioize"].as_str() {
        fields.push(("Version", format!("studioize {v}")));
    }
    let line: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", quote(&v)))
        .collect();
    if !line.is_empty() {
        out.push('\n');
        out.push_str(&line.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_transform() {
        let p = serde_json::json!({
            "prompt": "a red mug, studio light", "negative_prompt": "blurry", "sampler": "dpmpp-2m-karras",
            "steps": 20, "guidance": 7.5, "seed": 42, "width": 512, "height": 384,
            "model": "/models/sd, v1.4", "strength": 0.6, "variations": 1, "index": 0,
            "studioize": "0.1.0"});
        assert_eq!(
            format(&p),
            "a red mug, studio light\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, \
             CFG scale: 7.5, Seed: 42, Size: 512x384, Model: \"sd, v1.4\", Denoising strength: 0.6, \
             Version: studioize 0.1.0"
        );
        let batch = serde_json::json!({"prompt": "x", "num_images": 4, "index": 2, "seed": 1});
        assert_eq!(format(&batch), "x\nSeed: 1, Batch size: 4, Batch pos: 2");
        let ti = serde_json::json!({"prompt": "a <mug>", "embeddings": [
            {"token": "<mug>", "hash": "0123456789ab"}, {"token": "x:y", "hash": "ba9876543210"}]});
        assert_eq!(
            format(&ti),
            "a <mug>\nTI hashes: \"<mug>: 0123456789ab, xy: ba9876543210\""
        );
    }
}
