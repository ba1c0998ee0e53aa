//! Reads the shape of a serde type off its own `Deserialize` impl: [`record`] drives the type's
//! (derived) `Deserialize` with a `Deserializer` that holds no data. Each `deserialize_struct`
//! call hands it the struct's field names (the names serde accepts, renames applied, skipped
//! fields left out); the recorder answers with a map of exactly those fields and recurses into
//! each value, so every dotted key of the type is listed in declaration order with what it holds.
//! Scalars get a placeholder (`0`, `false`, `""`, an enum's first variant) that nothing reads.
use serde::de::value::{Error, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use std::cell::RefCell;

/// What one dotted key of a type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct: a table with fixed keys, listed as their own entries after it.
    Table,
    /// A map with free keys (e.g. `[sweep]`).
    Map,
    /// A value (scalar, enum, list); `path` when it is a path or a list of paths.
    Value { path: bool },
}

/// Every dotted key of `T` (fields of nested structs included, the root itself not) in
/// declaration order, with its shape. Fails on types that only a self-describing format can
/// deserialize (`deserialize_any`: untagged enums, `toml::Value` outside a free-key map).
pub fn record<T: DeserializeOwned>() -> Result<Vec<(String, Shape)>, Error> {
    let out = RefCell::new(Vec::new());
    T::deserialize(Recorder {
        out: &out,
        key: String::new(),
        in_list: false,
    })?;
    Ok(out.into_inner())
}

/// Whether a visitor is serde's `PathBuf` visitor (the one serde implements for `PathBuf`
/// says it expects a "path string"; `String`'s says "a string").
fn expects_path<'de, V: Visitor<'de>>(v: &V) -> bool {
    (v as &dyn Expected).to_string() == "path string"
}

/// The data-less `Deserializer`, positioned at one dotted key.
#[derive(Clone)]
struct Recorder<'a> {
    out: &'a RefCell<Vec<(String, Shape)>>,
    key: String,
    /// Inside a list's element: only marks the list's entry as holding paths.
    in_list: bool,
}

impl<'a> Recorder<'a> {
    fn note(&self, shape: Shape) {
        let mut out = self.out.borrow_mut();
        if self.key.is_empty() {
            return;
        }
        match out.iter_mut().find(|(k, _)| *k == self.key) {
            // an `Option` or a list element reaching the same key again
            Some((_, Shape::Value { path })) => *path |= shape == Shape::Value { path: true },
            Some(_) => {}
            None if !self.in_list => out.push((self.key.clone(), shape)),
            None => {}
        }
    }

    fn field(&self, name: &str) -> Recorder<'a> {
        let key = if self.key.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.key)
        };
        Recorder {
            key,
            ..self.clone()
        }
    }

    fn element(&self) -> Recorder<'a> {
        Recorder {
            in_list: true,
            ..self.clone()
        }
    }

    fn value(&self) {
        self.note(Shape::Value { path: false });
    }
}

/// The fields of one struct, each with a recorder for its value.
struct Fields<'a> {
    at: Recorder<'a>,
    fields: std::slice::Iter<'static, &'static str>,
    current: Option<&'static str>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(&name) = self.fields.next() else {
            return Ok(None);
        };
        self.current = Some(name);
        let key: StrDeserializer<'_, Error> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(self.at.field(name))
    }
}

/// A map with no entries (free-key maps are recorded, not filled).
struct NoEntries;

impl<'de> MapAccess<'de> for NoEntries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("an empty map has no values"))
    }
}

/// `left` elements, each recorded as part of the list's key.
struct Elements<'a> {
    at: Recorder<'a>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(self.at.element()).map(Some)
    }
}

/// The scalar methods: note a value, hand the visitor a placeholder.
macro_rules! placeholder {
    ($($method:ident => $visit:ident($($v:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.value();
            visitor.$visit($($v)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    placeholder! {
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_i8(0);
        deserialize_i16 => visit_i16(0);
        deserialize_i32 => visit_i32(0);
        deserialize_i64 => visit_i64(0);
        deserialize_i128 => visit_i128(0);
        deserialize_u8 => visit_u8(0);
        deserialize_u16 => visit_u16(0);
        deserialize_u32 => visit_u32(0);
        deserialize_u64 => visit_u64(0);
        deserialize_u128 => visit_u128(0);
        deserialize_f32 => visit_f32(0.0);
        deserialize_f64 => visit_f64(0.0);
        deserialize_char => visit_char('_');
        deserialize_bytes => visit_bytes(&[]);
        deserialize_byte_buf => visit_byte_buf(Vec::new());
        deserialize_unit => visit_unit();
        deserialize_identifier => visit_str("");
        deserialize_ignored_any => visit_unit();
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "`{}`: a self-describing type has no fixed shape to record",
            self.key
        )))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.note(Shape::Value {
            path: expects_path(&visitor),
        });
        visitor.visit_str("")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value();
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(1, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.value();
        visitor.visit_seq(Elements {
            at: self,
            left: len,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.note(Shape::Map);
        visitor.visit_map(NoEntries)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.note(Shape::Table);
        visitor.visit_map(Fields {
            at: self,
            fields: fields.iter(),
            current: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value();
        let first = variants.first().ok_or_else(|| {
            de::Error::custom(format!("`{}`: enum {name} has no variants", self.key))
        })?;
        let variant: StrDeserializer<'_, Error> = first.into_deserializer();
        de::Deserializer::deserialize_enum(variant, name, variants, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Section {
        dir: PathBuf,
        #[serde(default)]
        extra: Option<PathBuf>,
        inputs: Vec<PathBuf>,
        names: Vec<String>,
        #[serde(rename = "speed")]
        mode: Option<Mode>,
        #[serde(skip)]
        hidden: u32,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Root {
        name: String,
        count: u64,
        section: Section,
        #[serde(default)]
        free: Option<BTreeMap<String, u32>>,
        ratio: f64,
    }

    #[test]
    fn records_every_field_in_order() {
        let value = |path| Shape::Value { path };
        let got = record::<Root>().unwrap();
        let want = [
            ("name", value(false)),
            ("count", value(false)),
            ("section", Shape::Table),
            ("section.dir", value(true)),
            ("section.extra", value(true)),
            ("section.inputs", value(true)),
            ("section.names", value(false)),
            ("section.speed", value(false)),
            ("free", Shape::Map),
            ("ratio", value(false)),
        ];
        let got: Vec<(&str, Shape)> = got.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn self_describing_types_are_refused() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Loose {
            anything: toml::Value,
        }
        let e = record::<Loose>().unwrap_err().to_string();
        assert!(e.contains("`anything`"), "{e}");
    }
}
