//! A data-only reader of `torch.save` files (PyTorch's zip format: `<name>/data.pkl`, a
//! protocol-2 pickle, beside `<name>/data/<key>` storages), for textual-inversion embeddings.
//!
//! Nothing is imported or called: the pickle is interpreted opcode by opcode into [`Value`]s,
//! and the only globals it may name are tensor rebuilding (`torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`), the float storage types, `collections.OrderedDict`, `builtins.set` and
//! `torch.nn.ParameterDict` (kept as inert data). Any other global (`posix.system`, a class) is
//! an error naming it and the file. Tensors come out fp32 on the CPU.
use anyhow::{anyhow, bail, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// More containers than this is no embedding (and deep nesting could overflow the stack on drop).
const MAX_CONTAINERS: usize = 10_000;
/// Largest `data.pkl` read (an embedding's is under 1 KiB).
const MAX_PICKLE_BYTES: u64 = 1 << 20;

/// The globals a pickle may name, as the data they build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Global {
    RebuildTensor,
    RebuildParameter,
    OrderedDict,
    Set,
    ParameterDict,
    Storage(Kind),
}

fn global(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("__builtin__" | "builtins", "set") => Global::Set,
        ("torch.nn.modules.container", "ParameterDict") => Global::ParameterDict,
        ("torch", "FloatStorage") => Global::Storage(Kind::Float),
        ("torch", "HalfStorage") => Global::Storage(Kind::Half),
        ("torch", "BFloat16Storage") => Global::Storage(Kind::BFloat16),
        ("torch", "DoubleStorage") => Global::Storage(Kind::Double),
        _ => return None,
    })
}

/// A value of the pickle. Dicts and lists are shared (the memo refers to the same object).
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    /// A persistent id: storage `key` of `numel` elements.
    Storage(Kind, String, i64),
    Tensor(Rc<Tensor>),
    /// An `nn.ParameterDict` with the state `BUILD` gave it.
    ParameterDict(Rc<RefCell<Value>>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string, integer, float or bool as text (for metadata).
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A dict's entries (an `nn.ParameterDict`'s `_parameters`).
    pub fn entries(&self) -> Option<Vec<(Value, Value)>> {
        match self {
            Value::Dict(d) => Some(d.borrow().clone()),
            Value::ParameterDict(state) => state.borrow().get("_parameters")?.entries(),
            _ => None,
        }
    }

    /// A dict's value under a string key.
    pub fn get(&self, key: &str) -> Option<Value> {
        let entries = match self {
            Value::Dict(d) => d,
            _ => return None,
        };
        let found = entries
            .borrow()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone());
        found
    }

    /// What the value is, for errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a global",
            Value::Storage(..) => "a storage",
            Value::Tensor(_) => "a tensor",
            Value::ParameterDict(_) => "an nn.ParameterDict",
        }
    }
}

/// Reads a `torch.save` zip file into its top-level value, building no code.
pub fn load(path: &Path) -> Result<Value> {
    let shown = path.display();
    let mut head = [0u8; 2];
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{shown}: cannot open ({e})"))?;
    if (&file).read_exact(&mut head).is_ok() && head[0] == 0x80 {
        bail!("{shown}: torch.save's legacy format (before torch 1.6) is not read; re-save it with a current torch");
    }
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| anyhow!("{shown}: not a torch.save zip file ({e})"))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| anyhow!("{shown}: a zip without torch.save's <name>/data.pkl"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order)
            .map_err(|e| anyhow!("{shown}: cannot read the byte order ({e})"))?;
        if order != "little" {
            bail!("{shown}: byte order '{order}'; only little-endian files are read");
        }
    }
    let bytes =
        read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES).map_err(|e| anyhow!("{shown}: {pkl}: {e}"))?;
    let mut m = Machine {
        zip,
        prefix,
        storages: HashMap::new(),
    };
    m.run(&bytes).map_err(|e| anyhow!("{shown}: {e}"))
}

fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str, max: u64) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| anyhow!("missing from the zip ({e})"))?;
    if f.size() > max {
        bail!("{} bytes, more than the {max} expected", f.size());
    }
    let mut out = Vec::with_capacity(f.size() as usize);
    f.by_ref()
        .take(max)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("cannot read ({e})"))?;
    Ok(out)
}

struct Machine {
    zip: zip::ZipArchive<std::fs::File>,
    prefix: String,
    storages: HashMap<String, Tensor>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end =
            end.ok_or_else(|| anyhow!("the pickle ends inside an opcode at byte {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| anyhow!("a GLOBAL without its newline"))?;
        let s = String::from_utf8(rest[..n].to_vec())?;
        self.pos += n + 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Str(
            String::from_utf8(self.take(n)?.to_vec())
                .map_err(|_| anyhow!("a string that is not UTF-8"))?,
        ))
    }
}

impl Machine {
    fn run(&mut self, bytes: &[u8]) -> Result<Value> {
        let mut r = Reader { b: bytes, pos: 0 };
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        let mut containers = 0usize;
        loop {
            let at = r.pos;
            let op = r.u8()?;
            if matches!(op, b'}' | b']' | b')' | b't' | 0x85..=0x87 | 0x81) {
                containers += 1;
                if containers > MAX_CONTAINERS {
                    bail!("more than {MAX_CONTAINERS} containers; not an embedding's pickle");
                }
            }
            let pop = |stack: &mut Vec<Value>| {
                stack
                    .pop()
                    .ok_or_else(|| anyhow!("opcode {op:#04x} at byte {at} on an empty stack"))
            };
            let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Result<Vec<Value>> {
                let m = marks
                    .pop()
                    .ok_or_else(|| anyhow!("opcode {op:#04x} at byte {at} without a MARK"))?;
                if m > stack.len() {
                    bail!("a MARK below the stack at byte {at}");
                }
                Ok(stack.split_off(m))
            };
            match op {
                0x80 => {
                    let p = r.u8()?;
                    if p > 5 {
                        bail!("pickle protocol {p}");
                    }
                }
                0x95 => drop(r.take(8)?), // FRAME
                b'.' => return pop(&mut stack),
                b'}' => stack.push(Value::Dict(Rc::default())),
                b']' => stack.push(Value::List(Rc::default())),
                b')' => stack.push(Value::Tuple(Rc::default())),
                b'(' => marks.push(stack.len()),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'K' => stack.push(Value::Int(r.u8()? as i64)),
                b'M' => stack.push(Value::Int(u16::from_le_bytes(r.take(2)?.try_into()?) as i64)),
                b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
                0x8a => {
                    let n = r.u8()? as usize;
                    if n > 8 {
                        bail!("an integer of {n} bytes");
                    }
                    let b = r.take(n)?;
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut le = [fill; 8];
                    le[..n].copy_from_slice(b);
                    stack.push(Value::Int(i64::from_le_bytes(le)));
                }
                b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into()?))),
                b'X' => {
                    let n = r.u32()? as usize;
                    stack.push(r.text(n)?);
                }
                0x8c => {
                    let n = r.u8()? as usize;
                    stack.push(r.text(n)?);
                }
                b't' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        bail!("TUPLE{n} at byte {at} on a short stack");
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = pop(&mut stack)?;
                        let k = pop(&mut stack)?;
                        vec![k, v]
                    } else {
                        pop_mark(&mut stack, &mut marks)?
                    };
                    let Some(Value::Dict(d)) = stack.last() else { bail!("SETITEM(S) at byte {at} on no dict") };
                    if items.len() % 2 != 0 {
                        bail!("SETITEMS at byte {at} with an odd number of items");
                    }
                    let mut d = d.borrow_mut();
                    for kv in items.chunks(2) {
                        let (k, v) = (kv[0].clone(), kv[1].clone());
                        let key = k.as_str().map(str::to_string);
                        match d.iter_mut().find(|(old, _)| key.is_some() && old.as_str() == key.as_deref()) {
                            Some(slot) => slot.1 = v,
                            None => d.push((k, v)),
                        }
                    }
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![pop(&mut stack)?] } else { pop_mark(&mut stack, &mut marks)? };
                    let Some(Value::List(l)) = stack.last() else { bail!("APPEND(S) at byte {at} on no list") };
                    l.borrow_mut().extend(items);
                }
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => r.u8()? as u32,
                        b'r' => r.u32()?,
                        _ => memo.len() as u32,
                    };
                    let top = stack.last().ok_or_else(|| anyhow!("PUT at byte {at} on an empty stack"))?;
                    memo.insert(i, top.clone());
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                    stack.push(memo.get(&i).cloned().ok_or_else(|| anyhow!("GET of memo {i}, never put"))?);
                }
                b'c' => {
                    let (module, name) = (r.line()?, r.line()?);
                    let g = global(&module, &name).ok_or_else(|| {
                        anyhow!("refused global '{module}.{name}' in the pickle (not run: only tensors, dicts, lists, strings and numbers are read)")
                    })?;
                    stack.push(Value::Global(g));
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    stack.push(persistent(&pid)?);
                }
                b'R' | 0x81 => {
                    let args = pop(&mut stack)?;
                    let f = pop(&mut stack)?;
                    let Value::Tuple(args) = args else { bail!("REDUCE at byte {at} with {} for arguments", args.kind_name()) };
                    stack.push(self.call(&f, &args, op == 0x81)?);
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    match stack.last() {
                        Some(Value::ParameterDict(s)) => *s.borrow_mut() = state,
                        other => bail!("BUILD at byte {at} on {}", other.map_or("nothing", Value::kind_name)),
                    }
                }
                _ => bail!("pickle opcode {op:#04x} at byte {at} is not read (not one torch.save writes for tensors)"),
            }
        }
    }

    fn call(&mut self, f: &Value, args: &[Value], newobj: bool) -> Result<Value> {
        let Value::Global(g) = f else {
            bail!("a call of {}", f.kind_name())
        };
        match (g, newobj, args) {
            (
                Global::RebuildTensor,
                false,
                [s, Value::Int(off), Value::Tuple(size), Value::Tuple(stride), _, _, ..],
            ) => {
                let Value::Storage(kind, key, numel) = s else {
                    bail!("_rebuild_tensor_v2 of {}", s.kind_name())
                };
                let ints = |t: &[Value]| -> Result<Vec<i64>> {
                    t.iter()
                        .map(|v| match v {
                            Value::Int(i) if *i >= 0 => Ok(*i),
                            _ => bail!("a tensor size or stride that is not a count"),
                        })
                        .collect()
                };
                let (size, stride) = (ints(size)?, ints(stride)?);
                let storage = self.storage(*kind, key, *numel)?;
                Ok(Value::Tensor(Rc::new(strided(
                    &storage, *off, &size, &stride, key,
                )?)))
            }
            (Global::RebuildParameter, false, [t @ Value::Tensor(_), _, _, ..]) => Ok(t.clone()),
            (Global::OrderedDict, false, []) => Ok(Value::Dict(Rc::default())),
            (Global::Set, false, [Value::List(l)]) => Ok(Value::List(l.clone())),
            (Global::ParameterDict, true, []) => {
                Ok(Value::ParameterDict(Rc::new(RefCell::new(Value::None))))
            }
            _ => bail!(
                "{g:?} called with {} argument(s) it does not take",
                args.len()
            ),
        }
    }

    /// The storage `key` as a flat tensor of `numel` elements (read once, shared by its views).
    fn storage(&mut self, kind: Kind, key: &str, numel: i64) -> Result<Tensor> {
        if let Some(t) = self.storages.get(key) {
            return Ok(t.shallow_clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let esize = kind.elt_size_in_bytes() as u64;
        let want = (numel as u64)
            .checked_mul(esize)
            .ok_or_else(|| anyhow!("storage {key}: {numel} elements"))?;
        let bytes = read_entry(&mut self.zip, &name, want).map_err(|e| anyhow!("{name}: {e}"))?;
        if bytes.len() as u64 != want {
            bail!(
                "{name}: {} bytes for {numel} elements of {kind:?}",
                bytes.len()
            );
        }
        let t = Tensor::f_from_data_size(&bytes, &[numel], kind)?.to_kind(Kind::Float);
        self.storages.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    }
}

/// `('storage', StorageType, key, location, numel)`.
fn persistent(pid: &Value) -> Result<Value> {
    match pid {
        Value::Tuple(t) => match t.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(kind)), Value::Str(key), Value::Str(_), Value::Int(n)]
                if tag == "storage" && *n >= 0 =>
            {
                Ok(Value::Storage(*kind, key.clone(), *n))
            }
            _ => bail!("a persistent id other than ('storage', FloatStorage/HalfStorage/BFloat16Storage/DoubleStorage, key, location, numel)"),
        },
        other => bail!("a persistent id that is {}", other.kind_name()),
    }
}

/// The view `size` / `stride` at `offset` of a flat storage, copied out, after checking that it
/// stays inside the storage.
fn strided(
    storage: &Tensor,
    offset: i64,
    size: &[i64],
    stride: &[i64],
    key: &str,
) -> Result<Tensor> {
    if size.len() != stride.len() {
        bail!("storage {key}: size {size:?} and stride {stride:?} differ in length");
    }
    let numel = storage.size()[0];
    if !size.contains(&0) {
        let last = size.iter().zip(stride).try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
        if last.is_none_or(|l| l >= numel) {
            bail!("storage {key} of {numel} elements: a view size {size:?} stride {stride:?} offset {offset} reaches past it");
        }
    } else if offset > numel {
        bail!("storage {key}: offset {offset} past its {numel} elements");
    }
    Ok(storage
        .f_as_strided(size, stride, Some(offset))?
        .contiguous())
}
