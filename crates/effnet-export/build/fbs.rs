//! A small FlatBuffers schema compiler for `build.rs`: parses the part of the `.fbs` language
//! TFLite's schema uses (namespace, enums, unions, tables with scalar, enum, string, table,
//! union and vector fields, defaults, `deprecated` and `force_align`) and writes owned Rust
//! types for them that implement `crate::flatbuffer::Table`, so that `flatbuffer::finish`
//! serialises them. Declarations it does not know (`struct`, `include`, …) are errors.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A parsed field type.
#[derive(Clone, Debug)]
enum Ty {
    /// A named type: a scalar keyword, `string`, or an enum, union or table name.
    Named(String),
    /// `[T]`.
    Vector(Box<Ty>),
}

#[derive(Debug)]
struct FieldDecl {
    name: String,
    ty: Ty,
    default: Option<String>,
    deprecated: bool,
    force_align: usize,
}

#[derive(Debug)]
enum Decl {
    Enum {
        name: String,
        repr: String,
        variants: Vec<(String, i64)>,
    },
    Union {
        name: String,
        variants: Vec<String>,
    },
    Table {
        name: String,
        fields: Vec<FieldDecl>,
    },
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

fn tokenize(src: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for line in src.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '"' {
                chars.next();
                let mut s = String::from("\"");
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                tokens.push(s);
            } else if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(s);
            } else {
                tokens.push(c.to_string());
                chars.next();
            }
        }
    }
    tokens
}

impl Parser {
    fn peek(&self) -> &str {
        self.tokens.get(self.pos).map_or("", String::as_str)
    }

    fn next(&mut self) -> Result<String, String> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("unexpected end of schema")?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, want: &str) -> Result<(), String> {
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "expected `{want}`, found `{got}` (token {})",
                self.pos
            ))
        }
    }

    fn eat(&mut self, want: &str) -> bool {
        if self.peek() == want {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ty(&mut self) -> Result<Ty, String> {
        if self.eat("[") {
            let inner = self.ty()?;
            self.expect("]")?;
            Ok(Ty::Vector(Box::new(inner)))
        } else {
            Ok(Ty::Named(self.next()?))
        }
    }

    fn decls(&mut self) -> Result<Vec<Decl>, String> {
        let mut decls = Vec::new();
        while self.pos < self.tokens.len() {
            let keyword = self.next()?;
            match keyword.as_str() {
                "namespace" | "file_identifier" | "file_extension" | "root_type" => {
                    while self.next()? != ";" {}
                }
                "enum" => decls.push(self.enumeration()?),
                "union" => decls.push(self.union()?),
                "table" => decls.push(self.table()?),
                other => return Err(format!("unsupported schema declaration `{other}`")),
            }
        }
        Ok(decls)
    }

    fn enumeration(&mut self) -> Result<Decl, String> {
        let name = self.next()?;
        self.expect(":")?;
        let repr = self.next()?;
        self.expect("{")?;
        let mut variants = Vec::new();
        let mut value = 0i64;
        while !self.eat("}") {
            let v = self.next()?;
            if self.eat("=") {
                let n = self.next()?;
                value = n
                    .parse()
                    .map_err(|_| format!("{name}.{v}: bad value `{n}`"))?;
            }
            variants.push((v, value));
            value += 1;
            self.eat(",");
        }
        Ok(Decl::Enum {
            name,
            repr,
            variants,
        })
    }

    fn union(&mut self) -> Result<Decl, String> {
        let name = self.next()?;
        self.expect("{")?;
        let mut variants = Vec::new();
        while !self.eat("}") {
            let v = self.next()?;
            if self.peek() == "=" || self.peek() == ":" {
                return Err(format!(
                    "union {name}: explicit tags and aliases are unsupported"
                ));
            }
            variants.push(v);
            self.eat(",");
        }
        Ok(Decl::Union { name, variants })
    }

    fn table(&mut self) -> Result<Decl, String> {
        let name = self.next()?;
        self.expect("{")?;
        let mut fields = Vec::new();
        while !self.eat("}") {
            let field = self.next()?;
            self.expect(":")?;
            let ty = self.ty()?;
            let default = if self.eat("=") {
                Some(self.next()?)
            } else {
                None
            };
            let (mut deprecated, mut force_align) = (false, 1);
            if self.eat("(") {
                while !self.eat(")") {
                    let attr = self.next()?;
                    match attr.as_str() {
                        "deprecated" => deprecated = true,
                        "force_align" => {
                            self.expect(":")?;
                            let n = self.next()?;
                            force_align = n.parse().map_err(|_| format!("force_align `{n}`"))?;
                        }
                        other => return Err(format!("{name}.{field}: attribute `{other}`")),
                    }
                    self.eat(",");
                }
            }
            self.expect(";")?;
            fields.push(FieldDecl {
                name: field,
                ty,
                default,
                deprecated,
                force_align,
            });
        }
        Ok(Decl::Table { name, fields })
    }
}

/// Rust type of a scalar keyword.
fn scalar(name: &str) -> Option<&'static str> {
    Some(match name {
        "bool" => "bool",
        "byte" | "int8" => "i8",
        "ubyte" | "uint8" => "u8",
        "short" | "int16" => "i16",
        "ushort" | "uint16" => "u16",
        "int" | "int32" => "i32",
        "uint" | "uint32" => "u32",
        "long" | "int64" => "i64",
        "ulong" | "uint64" => "u64",
        "float" | "float32" => "f32",
        "double" | "float64" => "f64",
        _ => return None,
    })
}

/// `CONV_2D` -> `Conv2d`.
fn camel(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            let first = c.next().map(|f| f.to_ascii_uppercase()).into_iter();
            first
                .chain(c.map(|x| x.to_ascii_lowercase()))
                .collect::<String>()
        })
        .collect()
}

fn field_ident(name: &str) -> String {
    match name {
        "type" | "match" | "loop" | "move" | "ref" | "self" | "use" | "where" | "in" | "fn" => {
            format!("{name}_")
        }
        _ => name.to_string(),
    }
}

enum Kind<'a> {
    Enum(&'a [(String, i64)]),
    Union,
    Table,
}

/// Generates the Rust module text for `schema`.
pub fn compile(schema: &str) -> Result<String, String> {
    let decls = Parser {
        tokens: tokenize(schema),
        pos: 0,
    }
    .decls()?;
    let mut kinds: HashMap<&str, Kind> = HashMap::new();
    for d in &decls {
        match d {
            Decl::Enum { name, variants, .. } => kinds.insert(name, Kind::Enum(variants)),
            Decl::Union { name, .. } => kinds.insert(name, Kind::Union),
            Decl::Table { name, .. } => kinds.insert(name, Kind::Table),
        };
    }
    let mut out = String::new();
    for d in &decls {
        match d {
            Decl::Enum {
                name,
                repr,
                variants,
            } => enum_code(&mut out, name, repr, variants)?,
            Decl::Union { name, variants } => union_code(&mut out, name, variants),
            Decl::Table { name, fields } => table_code(&mut out, name, fields, &kinds)?,
        }
    }
    Ok(out)
}

fn enum_code(
    out: &mut String,
    name: &str,
    repr: &str,
    variants: &[(String, i64)],
) -> Result<(), String> {
    let rust = scalar(repr).ok_or(format!("enum {name}: underlying type `{repr}`"))?;
    let default = variants
        .iter()
        .find(|(_, v)| *v == 0)
        .or(variants.first())
        .ok_or(format!("enum {name} has no values"))?;
    let _ = writeln!(out, "/// The schema's enum `{name}` (`{repr}`).");
    let _ = writeln!(
        out,
        "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]"
    );
    let _ = writeln!(out, "pub enum {name} {{");
    for (v, value) in variants {
        let _ = writeln!(out, "    /// `{v}`\n    {} = {value},", camel(v));
    }
    let _ = writeln!(out, "}}");
    let _ = writeln!(
        out,
        "impl {name} {{\n    /// The value stored in a buffer.\n    pub const fn value(self) -> {rust} {{ self as i64 as {rust} }}\n}}"
    );
    let _ = writeln!(
        out,
        "impl Default for {name} {{\n    fn default() -> Self {{ {name}::{} }}\n}}\n",
        camel(&default.0)
    );
    Ok(())
}

fn union_code(out: &mut String, name: &str, variants: &[String]) {
    let _ = writeln!(
        out,
        "/// The schema's union `{name}`.\n#[derive(Clone, Debug, PartialEq)]"
    );
    let _ = writeln!(out, "pub enum {name} {{");
    for v in variants {
        let _ = writeln!(out, "    /// A `{v}` table.\n    {v}(Box<{v}>),");
    }
    let _ = writeln!(out, "}}\nimpl {name} {{");
    let _ = writeln!(
        out,
        "    /// The union's type tag (0 is NONE).\n    pub fn tag(&self) -> u8 {{\n        match self {{"
    );
    for (i, v) in variants.iter().enumerate() {
        let _ = writeln!(out, "            {name}::{v}(_) => {},", i + 1);
    }
    let _ = writeln!(out, "        }}\n    }}");
    let _ = writeln!(
        out,
        "    /// The value table.\n    pub fn table(&self) -> &dyn Table {{\n        match self {{"
    );
    for v in variants {
        let _ = writeln!(out, "            {name}::{v}(t) => &**t,");
    }
    let _ = writeln!(out, "        }}\n    }}\n}}\n");
}

/// The default expression of a scalar or enum field.
fn default_expr(f: &FieldDecl, kinds: &HashMap<&str, Kind>, table: &str) -> Result<String, String> {
    let Ty::Named(ty) = &f.ty else {
        return Ok("None".into());
    };
    if let Some(rust) = scalar(ty) {
        return Ok(match (&f.default, rust) {
            (None, "bool") => "false".into(),
            (None, "f32" | "f64") => "0.0".into(),
            (None, _) => "0".into(),
            (Some(d), "f32" | "f64") if !d.contains('.') => format!("{d}.0"),
            (Some(d), _) => d.clone(),
        });
    }
    match kinds.get(ty.as_str()) {
        Some(Kind::Enum(variants)) => {
            let v = match &f.default {
                None => return Ok(format!("{ty}::default()")),
                Some(d) => variants
                    .iter()
                    .find(|(n, v)| n == d || v.to_string() == *d)
                    .ok_or(format!("{table}.{}: default `{d}`", f.name))?,
            };
            Ok(format!("{ty}::{}", camel(&v.0)))
        }
        _ => Ok("None".into()),
    }
}

fn table_code(
    out: &mut String,
    name: &str,
    fields: &[FieldDecl],
    kinds: &HashMap<&str, Kind>,
) -> Result<(), String> {
    let mut decl = String::new();
    let mut defaults = String::new();
    let mut writes = String::new();
    let mut slot = 0u16;
    for f in fields {
        let id = field_ident(&f.name);
        let here = slot;
        let is_union =
            matches!(&f.ty, Ty::Named(t) if matches!(kinds.get(t.as_str()), Some(Kind::Union)));
        slot += if is_union { 2 } else { 1 };
        if f.deprecated {
            continue;
        }
        let (rust_ty, write) = match &f.ty {
            Ty::Named(t) if scalar(t).is_some() => (
                scalar(t).unwrap_or_default().to_string(),
                format!(
                    "if self.{id} != {d} {{ f.push(({here}, Field::scalar(self.{id}))); }}",
                    d = default_expr(f, kinds, name)?
                ),
            ),
            Ty::Named(t) if t == "string" => (
                "Option<String>".into(),
                format!("if let Some(v) = &self.{id} {{ f.push(({here}, Field::Str(v))); }}"),
            ),
            Ty::Named(t) => match kinds.get(t.as_str()) {
                Some(Kind::Enum(..)) => (
                    t.clone(),
                    format!(
                        "if self.{id} != {d} {{ f.push(({here}, Field::scalar(self.{id}.value()))); }}",
                        d = default_expr(f, kinds, name)?
                    ),
                ),
                Some(Kind::Union) => (
                    format!("Option<{t}>"),
                    format!(
                        "if let Some(v) = &self.{id} {{ f.push(({here}, Field::scalar(v.tag()))); f.push(({}, Field::Table(v.table()))); }}",
                        here + 1
                    ),
                ),
                Some(Kind::Table) => (
                    format!("Option<Box<{t}>>"),
                    format!(
                        "if let Some(v) = &self.{id} {{ f.push(({here}, Field::Table(&**v))); }}"
                    ),
                ),
                None => return Err(format!("{name}.{}: unknown type `{t}`", f.name)),
            },
            Ty::Vector(inner) => {
                let Ty::Named(t) = &**inner else {
                    return Err(format!("{name}.{}: nested vectors", f.name));
                };
                let align = f.force_align;
                if t == "ubyte" || t == "uint8" {
                    (
                        "Option<Vec<u8>>".into(),
                        format!(
                            "if let Some(v) = &self.{id} {{ f.push(({here}, Field::bytes(v, {align}))); }}"
                        ),
                    )
                } else if let Some(rust) = scalar(t) {
                    (
                        format!("Option<Vec<{rust}>>"),
                        format!(
                            "if let Some(v) = &self.{id} {{ f.push(({here}, Field::scalars(v, {align}))); }}"
                        ),
                    )
                } else if let Some(Kind::Table) = kinds.get(t.as_str()) {
                    (
                        format!("Option<Vec<{t}>>"),
                        format!(
                            "if let Some(v) = &self.{id} {{ f.push(({here}, Field::Tables(v.iter().map(|t| t as &dyn Table).collect()))); }}"
                        ),
                    )
                } else {
                    return Err(format!(
                        "{name}.{}: vectors of `{t}` are unsupported",
                        f.name
                    ));
                }
            }
        };
        let _ = writeln!(
            decl,
            "    /// Field `{}`.\n    pub {id}: {rust_ty},",
            f.name
        );
        let _ = writeln!(
            defaults,
            "            {id}: {},",
            default_expr(f, kinds, name)?
        );
        let _ = writeln!(writes, "        {write}");
    }
    let _ = writeln!(
        out,
        "/// The schema's table `{name}`.\n#[derive(Clone, Debug, PartialEq)]"
    );
    let _ = writeln!(out, "pub struct {name} {{\n{decl}}}");
    let _ = writeln!(
        out,
        "impl Default for {name} {{\n    fn default() -> Self {{\n        Self {{\n{defaults}        }}\n    }}\n}}"
    );
    let _ = writeln!(
        out,
        "impl Table for {name} {{\n    #[allow(unused_mut)]\n    fn fields(&self) -> Vec<(u16, Field<'_>)> {{\n        let mut f = Vec::new();\n{writes}        f\n    }}\n}}\n"
    );
    Ok(())
}
