//! A data-only interpreter of the protocol-2 pickles `torch.save` writes (its zip is read by
//! [`super::torch_save`]), for textual-inversion embeddings.
//!
//! Nothing is imported or called: the pickle is interpreted opcode by opcode into [`Value`]s,
//! and the only globals it may name are tensor rebuilding (`torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`), the float storage types, `collections.OrderedDict`, `builtins.set` and
//! `torch.nn.ParameterDict` (kept as inert data). Any other global (`posix.system`, a class) is
//! an error naming it. Tensors are built by the caller from their storage references.
use anyhow::{anyhow, bail, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// More containers than this is no embedding (and deep nesting could overflow the stack on drop).
const MAX_CONTAINERS: usize = 10_000;
/// Why a global is refused.
const REFUSED: &str = "(never run: an embedding's pickle may only rebuild tensors)";

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
        let Value::Dict(d) = self else { return None };
        let d = d.borrow();
        let mut found = d.iter().rev().filter(|(k, _)| k.as_str() == Some(key));
        found.next().map(|(_, v)| v.clone())
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

/// A tensor the pickle rebuilds: `size` / `stride` at `offset` of storage `key` (`numel`
/// elements of `kind`).
pub struct TensorRef<'a> {
    pub kind: Kind,
    pub key: &'a str,
    pub numel: i64,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// Interprets `bytes` (a protocol-2 pickle) as data; `tensor` builds each tensor it rebuilds.
pub fn unpickle(
    bytes: &[u8],
    tensor: &mut dyn FnMut(TensorRef) -> Result<Tensor>,
) -> Result<Value> {
    Machine { tensor }.run(bytes)
}

struct Machine<'t> {
    tensor: &'t mut dyn FnMut(TensorRef) -> Result<Tensor>,
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

impl Machine<'_> {
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
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
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
                    let items = match op {
                        b's' if stack.len() >= 3 => stack.split_off(stack.len() - 2),
                        b's' => bail!("SETITEM at byte {at} on a short stack"),
                        _ => pop_mark(&mut stack, &mut marks)?,
                    };
                    let (Some(Value::Dict(d)), true) = (stack.last(), items.len() % 2 == 0) else {
                        bail!("SETITEM(S) at byte {at} not on a dict, or with an odd count")
                    };
                    let pairs = items.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone()));
                    d.borrow_mut().extend(pairs);
                }
                b'a' | b'e' => {
                    let items = match op {
                        b'a' => vec![pop(&mut stack)?],
                        _ => pop_mark(&mut stack, &mut marks)?,
                    };
                    let Some(Value::List(l)) = stack.last() else {
                        bail!("APPEND(S) at byte {at} not on a list")
                    };
                    l.borrow_mut().extend(items);
                }
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => r.u8()? as u32,
                        b'r' => r.u32()?,
                        _ => memo.len() as u32,
                    };
                    let top = stack
                        .last()
                        .ok_or_else(|| anyhow!("PUT at byte {at}, no value"))?;
                    memo.insert(i, top.clone());
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                    let v = memo
                        .get(&i)
                        .ok_or_else(|| anyhow!("GET of memo {i}, never put"))?;
                    stack.push(v.clone());
                }
                b'c' => {
                    let (module, name) = (r.line()?, r.line()?);
                    let g = global(&module, &name)
                        .ok_or_else(|| anyhow!("refused global '{module}.{name}' {REFUSED}"))?;
                    stack.push(Value::Global(g));
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    stack.push(persistent(&pid)?);
                }
                b'R' | 0x81 => {
                    let (args, f) = (pop(&mut stack)?, pop(&mut stack)?);
                    let Value::Tuple(args) = args else {
                        bail!(
                            "a call at byte {at} with {} for arguments",
                            args.kind_name()
                        )
                    };
                    stack.push(self.call(&f, &args, op == 0x81)?);
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    let Some(Value::ParameterDict(s)) = stack.last() else {
                        bail!("BUILD at byte {at} on no nn.ParameterDict")
                    };
                    *s.borrow_mut() = state;
                }
                _ => bail!("pickle opcode {op:#04x} at byte {at}: not one torch.save writes"),
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
                let (kind, numel, offset) = (*kind, *numel, *off);
                let t = (self.tensor)(TensorRef {
                    kind,
                    key,
                    numel,
                    offset,
                    size,
                    stride,
                })?;
                Ok(Value::Tensor(Rc::new(t)))
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
}

/// `('storage', StorageType, key, location, numel)`.
fn persistent(pid: &Value) -> Result<Value> {
    use Value::{Int, Str};
    let Value::Tuple(t) = pid else {
        bail!("a persistent id that is {}", pid.kind_name())
    };
    match t.as_slice() {
        [Str(tag), Value::Global(Global::Storage(kind)), Str(key), Str(_), Int(n)]
            if tag == "storage" && *n >= 0 =>
        {
            Ok(Value::Storage(*kind, key.clone(), *n))
        }
        _ => bail!("a persistent id other than ('storage', <float storage>, key, device, numel)"),
    }
}
