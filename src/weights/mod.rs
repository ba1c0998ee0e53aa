//! Reading checkpoints into `tch` variable stores.
//!
//! A [`WeightSet`] is a bag of named tensors, each remembering the file it came from, so that
//! every error can name the tensor *and* the file. Models are built first (their variables are
//! created through `nn::Path` with the reference libraries' names), then
//! [`WeightSet::load_into`] checks names and shapes strictly and copies the values in.
mod adopt;
pub mod compvis;
pub mod embedding;
pub(crate) mod files;
pub mod hub;
pub mod layout;
pub mod lora;
pub(crate) mod pickle;
mod save;
pub(crate) mod torch_save;

pub use adopt::all_finite;
pub use files::{component_files, read_safetensors, read_safetensors_metadata};
pub use save::{write_safetensors, write_stream, SaveOptions, TensorSpec};

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// One tensor of a checkpoint and the file it was read from.
#[derive(Debug)]
pub struct Entry {
    pub tensor: Tensor,
    pub file: PathBuf,
}

/// Named tensors gathered from one or more files.
#[derive(Debug, Default)]
pub struct WeightSet {
    entries: BTreeMap<String, Entry>,
    /// The private memory maps of the files read (whole-file `uint8` tensors), whose pages
    /// the tensors viewing them share.
    maps: Vec<Tensor>,
}

impl WeightSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every tensor of the given safetensors files (e.g. the shards of one component):
    /// views of the memory-mapped files, nothing copied (see [`read_safetensors`]).
    pub fn read_files(files: &[PathBuf]) -> Result<Self> {
        let mut set = Self::new();
        for file in files {
            let (tensors, map) = files::read_mapped(file)?;
            set.maps.extend(map);
            for (name, tensor) in tensors {
                if let Some(prev) = set.entries.get(&name) {
                    bail!(
                        "tensor '{name}' appears twice: in {} and in {}",
                        prev.file.display(),
                        file.display()
                    );
                }
                set.insert(name, tensor, file.clone());
            }
        }
        Ok(set)
    }

    /// Reads a diffusers/transformers component folder: `stem.safetensors`, its `variant`
    /// (e.g. `fp16`), or a sharded `stem.safetensors.index.json`. See [`component_files`].
    pub fn read_component(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Self> {
        Self::read_files(&component_files(dir, stem, variant)?)
    }

    pub fn insert(&mut self, name: String, tensor: Tensor, file: PathBuf) {
        self.entries.insert(name, Entry { tensor, file });
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.entries.remove(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The distinct files the tensors came from, for messages.
    pub fn files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = self.entries.values().map(|e| e.file.as_path()).collect();
        files.sort();
        files.dedup();
        files
    }

    /// An empty set that knows the same file maps (for sets built from this one's tensors).
    pub fn sharing_maps(&self) -> WeightSet {
        WeightSet {
            entries: BTreeMap::new(),
            maps: self.maps.iter().map(Tensor::shallow_clone).collect(),
        }
    }

    /// Takes out every tensor whose name starts with `prefix`, with the prefix removed.
    pub fn split_prefix(&mut self, prefix: &str) -> WeightSet {
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut out = self.sharing_maps();
        for k in keys {
            let e = self.entries.remove(&k).expect("key listed above");
            out.entries.insert(k[prefix.len()..].to_string(), e);
        }
        out
    }

    /// Renames every tensor through `f`; `None` drops the tensor.
    pub fn map_names(self, mut f: impl FnMut(&str) -> Option<String>) -> WeightSet {
        let mut out = self.sharing_maps();
        for (k, e) in self.entries {
            if let Some(n) = f(&k) {
                out.entries.insert(n, e);
            }
        }
        out
    }

    /// Checks that this set matches the variables of `vs` exactly (names and shapes; names for
    /// which `ignore` is true may be present in the file but are not loaded, as the reference
    /// libraries do with buffers such as `position_ids`), that every value is finite, and gives
    /// the values to the variables, converting dtype and device to the variables' one tensor at
    /// a time. A variable whose dtype and device are the file's takes the file's tensor itself
    /// (its storage replaced, no copy: the model need not have initialised it); the set should
    /// not be loaded into a second model afterwards.
    ///
    /// `component` names the model in messages ("unet", "text_encoder", ...).
    pub fn load_into(
        &self,
        vs: &VarStore,
        component: &str,
        ignore: impl Fn(&str) -> bool,
    ) -> Result<()> {
        self.load(vs, component, ignore, adopt::Mode::Adopt)
    }

    /// [`WeightSet::load_into`], but copying the values into the variables' own storage, for a
    /// model in use (resuming training: the optimizer holds the same tensors).
    pub fn copy_into(
        &self,
        vs: &VarStore,
        component: &str,
        ignore: impl Fn(&str) -> bool,
    ) -> Result<()> {
        self.load(vs, component, ignore, adopt::Mode::Copy)
    }

    fn load(
        &self,
        vs: &VarStore,
        component: &str,
        ignore: impl Fn(&str) -> bool,
        mode: adopt::Mode,
    ) -> Result<()> {
        let vars = vs.variables();
        self.check_names_and_shapes(&vars, component, ignore)?;
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        let mut adopted = HashSet::new();
        tch::no_grad(|| -> Result<()> {
            for name in names {
                let e = &self.entries[name.as_str()];
                if !adopt::all_finite(&e.tensor)? {
                    bail!(
                        "{component}: tensor '{name}' in {} contains NaN or infinite values",
                        e.file.display()
                    );
                }
                adopt::into_var(&vars[name], &e.tensor, mode, &self.maps, &mut adopted)?;
            }
            Ok(())
        })
    }

    /// Every variable of `vars` has a tensor of its shape here, and every tensor here is a
    /// variable or `ignore`d; else the first problem (and how many more) naming tensor and file.
    fn check_names_and_shapes(
        &self,
        vars: &HashMap<String, Tensor>,
        component: &str,
        ignore: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let where_ = self.describe_files();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let var = &vars[name];
            match self.entries.get(name.as_str()) {
                None => problems.push(format!(
                    "{component}: tensor '{name}' is missing from {where_} (expected shape {:?})",
                    var.size()
                )),
                Some(e) if e.tensor.size() != var.size() => problems.push(format!(
                    "{component}: tensor '{name}' in {} has shape {:?}, expected {:?}",
                    e.file.display(),
                    e.tensor.size(),
                    var.size()
                )),
                Some(_) => {}
            }
        }
        for (name, e) in &self.entries {
            if !vars.contains_key(name) && !ignore(name) {
                problems.push(format!(
                    "{component}: unexpected tensor '{name}' in {} (shape {:?}) is not part of the model",
                    e.file.display(),
                    e.tensor.size()
                ));
            }
        }
        match problems.first() {
            None => Ok(()),
            Some(first) if problems.len() > 1 => {
                bail!(
                    "{first} (and {} more weight problem(s))",
                    problems.len() - 1
                )
            }
            Some(first) => bail!("{first}"),
        }
    }

    fn describe_files(&self) -> String {
        let files = self.files();
        match files.len() {
            0 => "an empty checkpoint".to_string(),
            1 => files[0].display().to_string(),
            n => format!("{} (+{} more shard(s))", files[0].display(), n - 1),
        }
    }
}

/// Total number of scalar parameters in a variable store (as `sum(p.numel())` in PyTorch).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.variables().values().map(|t| t.numel() as i64).sum()
}
