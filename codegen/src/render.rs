//! The text of the generated module: checks, then types, descriptions and
//! the client class.

use std::fmt::Write as _;

use hardlight_core::reflect::{Fields, OutputDesc, Registry, ServiceDesc, Shape, TypeKind};

use crate::GenError;

type State = (String, Vec<(String, Shape)>);

/// Refuses what the TypeScript form cannot represent faithfully.
pub fn check(reg: &Registry, desc: &ServiceDesc, state: Option<&State>) -> Result<(), GenError> {
    if let Some(name) = reg.collisions.first() {
        return Err(GenError::NameCollision(name.clone()));
    }
    let mut shapes: Vec<&Shape> = Vec::new();
    for m in &desc.methods {
        shapes.extend(m.args.iter().map(|(_, s)| s));
        match &m.output {
            OutputDesc::Plain(s) => shapes.push(s),
            OutputDesc::Result { ok, err } => shapes.extend([ok, err]),
        }
    }
    shapes.extend(desc.events.iter().map(|e| &e.shape));
    if let Some((_, fields)) = state {
        shapes.extend(fields.iter().map(|(_, s)| s));
    }
    for def in reg.defs() {
        match &def.kind {
            TypeKind::Struct(f) => shapes.extend(field_shapes(f)),
            TypeKind::Enum(vs) => {
                if vs.len() > 256 {
                    return Err(GenError::TooManyVariants(def.name.clone()));
                }
                for v in vs {
                    if let Fields::Named(n) = &v.fields {
                        if n.iter().any(|(name, _)| name == "tag") {
                            return Err(GenError::TagField(format!("{}::{}", def.name, v.name)));
                        }
                    }
                    shapes.extend(field_shapes(&v.fields));
                }
            }
        }
    }
    for s in shapes {
        check_shape(s)?;
        check_zero_sized(reg, s)?;
    }
    Ok(())
}

/// Whether values of `s` take no bytes.
fn zero_sized(reg: &Registry, s: &Shape) -> bool {
    match s {
        Shape::Unit => true,
        Shape::Array(i, n) => *n == 0 || zero_sized(reg, i),
        Shape::Tuple(t) => t.iter().all(|x| zero_sized(reg, x)),
        Shape::Named(n) => match reg.get(n).map(|d| &d.kind) {
            Some(TypeKind::Struct(f)) => field_shapes(f).into_iter().all(|x| zero_sized(reg, x)),
            _ => false,
        },
        _ => false,
    }
}

fn check_zero_sized(reg: &Registry, s: &Shape) -> Result<(), GenError> {
    match s {
        Shape::Vec(i) if zero_sized(reg, i) => Err(GenError::ZeroSizedElements(ts_type(s))),
        Shape::Vec(i) | Shape::Option(i) | Shape::Array(i, _) => check_zero_sized(reg, i),
        Shape::Tuple(t) => t.iter().try_for_each(|x| check_zero_sized(reg, x)),
        _ => Ok(()),
    }
}

fn field_shapes(f: &Fields) -> Vec<&Shape> {
    match f {
        Fields::Unit => Vec::new(),
        Fields::Named(n) => n.iter().map(|(_, s)| s).collect(),
        Fields::Unnamed(u) => u.iter().collect(),
    }
}

fn check_shape(s: &Shape) -> Result<(), GenError> {
    match s {
        Shape::Option(inner) => {
            if matches!(**inner, Shape::Option(_) | Shape::Unit) {
                return Err(GenError::AmbiguousOption(ts_type(s)));
            }
            check_shape(inner)
        }
        Shape::Vec(i) | Shape::Array(i, _) => check_shape(i),
        Shape::Tuple(t) => t.iter().try_for_each(check_shape),
        _ => Ok(()),
    }
}

/// `{k:"..."}` form of a shape (`clients/ts/src/shape.ts`).
pub fn shape(s: &Shape) -> String {
    let prim = |k: &str| format!("{{ k: \"{k}\" }}");
    match s {
        Shape::Unit => prim("unit"),
        Shape::Bool => prim("bool"),
        Shape::U8 => prim("u8"),
        Shape::U16 => prim("u16"),
        Shape::U32 => prim("u32"),
        Shape::U64 => prim("u64"),
        Shape::U128 => prim("u128"),
        Shape::I8 => prim("i8"),
        Shape::I16 => prim("i16"),
        Shape::I32 => prim("i32"),
        Shape::I64 => prim("i64"),
        Shape::I128 => prim("i128"),
        Shape::F32 => prim("f32"),
        Shape::F64 => prim("f64"),
        Shape::Char => prim("char"),
        Shape::String => prim("string"),
        Shape::Vec(i) => format!("{{ k: \"vec\", of: {} }}", shape(i)),
        Shape::Option(i) => format!("{{ k: \"option\", of: {} }}", shape(i)),
        Shape::Array(i, n) => format!("{{ k: \"array\", of: {}, len: {n} }}", shape(i)),
        Shape::Tuple(t) => format!("{{ k: \"tuple\", of: [{}] }}", t.iter().map(shape).collect::<Vec<_>>().join(", ")),
        Shape::Named(n) => format!("{{ k: \"ref\", name: {} }}", quote(n)),
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn fields_desc(f: &Fields) -> String {
    match f {
        Fields::Unit => "{ style: \"unit\" }".into(),
        Fields::Named(n) => format!(
            "{{ style: \"named\", names: [{}], shapes: [{}] }}",
            n.iter().map(|(k, _)| quote(k)).collect::<Vec<_>>().join(", "),
            n.iter().map(|(_, s)| shape(s)).collect::<Vec<_>>().join(", ")
        ),
        Fields::Unnamed(u) => {
            format!("{{ style: \"unnamed\", shapes: [{}] }}", u.iter().map(shape).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The `TYPES` object literal.
pub fn types(reg: &Registry) -> String {
    let mut out = String::from("{\n");
    for def in reg.defs() {
        let body = match &def.kind {
            TypeKind::Struct(f) => format!("{{ kind: \"struct\", fields: {} }}", fields_desc(f)),
            TypeKind::Enum(vs) => format!(
                "{{\n    kind: \"enum\",\n    variants: [\n{}    ],\n  }}",
                vs.iter()
                    .map(|v| format!("      {{ name: {}, fields: {} }},\n", quote(&v.name), fields_desc(&v.fields)))
                    .collect::<String>()
            ),
        };
        let _ = writeln!(out, "  {}: {body},", quote(&def.name));
    }
    out.push('}');
    out
}

/// The TypeScript type of a value of shape `s`.
pub fn ts_type(s: &Shape) -> String {
    match s {
        Shape::Unit => "null".into(),
        Shape::Bool => "boolean".into(),
        Shape::U8 | Shape::U16 | Shape::U32 | Shape::I8 | Shape::I16 | Shape::I32 | Shape::F32 | Shape::F64 => {
            "number".into()
        }
        Shape::U64 | Shape::U128 | Shape::I64 | Shape::I128 => "bigint".into(),
        Shape::Char | Shape::String => "string".into(),
        Shape::Vec(i) | Shape::Array(i, _) => match **i {
            Shape::Option(_) => format!("({})[]", ts_type(i)),
            _ => format!("{}[]", ts_type(i)),
        },
        Shape::Option(i) => format!("{} | null", ts_type(i)),
        Shape::Tuple(t) => format!("[{}]", t.iter().map(ts_type).collect::<Vec<_>>().join(", ")),
        Shape::Named(n) => n.clone(),
    }
}

fn ts_decl(name: &str, kind: &TypeKind) -> String {
    match kind {
        TypeKind::Struct(Fields::Unit) => format!("export type {name} = Record<string, never>;\n"),
        TypeKind::Struct(Fields::Named(n)) => {
            let mut s = format!("export interface {name} {{\n");
            for (k, t) in n {
                let _ = writeln!(s, "  {k}: {};", ts_type(t));
            }
            s + "}\n"
        }
        TypeKind::Struct(Fields::Unnamed(u)) => {
            format!("export type {name} = [{}];\n", u.iter().map(ts_type).collect::<Vec<_>>().join(", "))
        }
        TypeKind::Enum(vs) => {
            let arms: Vec<String> = vs
                .iter()
                .map(|v| {
                    let tag = quote(&v.name);
                    match &v.fields {
                        Fields::Unit => format!("{{ tag: {tag} }}"),
                        Fields::Named(n) => format!(
                            "{{ tag: {tag}; {} }}",
                            n.iter().map(|(k, t)| format!("{k}: {};", ts_type(t))).collect::<Vec<_>>().join(" ")
                        ),
                        Fields::Unnamed(u) => format!(
                            "{{ tag: {tag}; {} }}",
                            u.iter()
                                .enumerate()
                                .map(|(i, t)| format!("{i}: {};", ts_type(t)))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    }
                })
                .collect();
            format!("export type {name} =\n  | {};\n", arms.join("\n  | "))
        }
    }
}

/// `send_message` to `sendMessage`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = !out.is_empty();
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The whole module.
pub fn module(reg: &Registry, desc: &ServiceDesc, state: Option<&State>, runtime: &str) -> String {
    let name = &desc.name;
    let mut out = format!(
        "// Generated by hardlight-codegen from the Rust service `{name}`. Do not edit:\n\
         // change the Rust definition and generate again.\n\n\
         import {{ Connection, type CallOptions, type ConnectOptions, type Result, type ServiceDesc, type Types, connect }} from {};\n\n",
        quote(runtime)
    );
    let _ = writeln!(out, "/** The schema fingerprint the server checks at the upgrade (`HardLight-Schema`). */");
    let _ = writeln!(out, "export const FINGERPRINT = \"{:016x}\";\n", desc.fingerprint);
    for def in reg.defs() {
        out.push_str(&ts_decl(&def.name, &def.kind));
        out.push('\n');
    }
    let state_ty = match state {
        Some((sname, fields)) => {
            out.push_str(&ts_decl(sname, &TypeKind::Struct(Fields::Named(fields.clone()))));
            out.push('\n');
            sname.clone()
        }
        None => "Record<string, never>".into(),
    };
    let _ = writeln!(out, "/** Event types by name; each one's wire id is its position in `events(...)`. */");
    out.push_str(&format!("export interface {name}Events {{\n"));
    for e in &desc.events {
        let _ = writeln!(out, "  {}: {};", ts_type(&e.shape), ts_type(&e.shape));
    }
    out.push_str("}\n\n");
    let _ = writeln!(out, "/** Archived layouts of the named types (for the runtime's codecs). */");
    let _ = writeln!(out, "export const TYPES: Types = {};\n", types(reg));
    let _ =
        writeln!(out, "/** The service as the runtime needs it: method ids and shapes, event ids, state fields. */");
    let _ = writeln!(
        out,
        "export const SERVICE: ServiceDesc = {{\n  name: {},\n  fingerprint: FINGERPRINT,\n  types: TYPES,",
        quote(name)
    );
    out.push_str("  methods: [\n");
    for m in &desc.methods {
        let (ok, err) = match &m.output {
            OutputDesc::Plain(s) => (shape(s), "null".to_string()),
            OutputDesc::Result { ok, err } => (shape(ok), shape(err)),
        };
        let args = m.args.iter().map(|(_, s)| shape(s)).collect::<Vec<_>>().join(", ");
        // Only marked methods say so: unmarked services generate as before.
        let idempotent = if m.idempotent { ", idempotent: true" } else { "" };
        let _ = writeln!(
            out,
            "    {{ name: {}, id: {}, input: {{ k: \"tuple\", of: [{args}] }}, ok: {ok}, err: {err}{idempotent} }},",
            quote(&m.name),
            m.id
        );
    }
    out.push_str("  ],\n  events: [\n");
    for e in &desc.events {
        let _ =
            writeln!(out, "    {{ id: {}, name: {}, shape: {} }},", e.id, quote(&ts_type(&e.shape)), shape(&e.shape));
    }
    out.push_str("  ],\n  state: [\n");
    for (fname, s) in state.map(|s| s.1.as_slice()).unwrap_or_default() {
        let _ = writeln!(out, "    {{ name: {}, shape: {} }},", quote(fname), shape(s));
    }
    out.push_str("  ],\n};\n\n");
    let _ = writeln!(out, "/** A connection to a `{name}` server, typed. */");
    let _ = writeln!(out, "export type {name}Connection = Connection<{state_ty}, {name}Events>;\n");
    let _ = writeln!(
        out,
        "/** Opens a connection to a `{name}` server (`hl/1`, with this module's fingerprint). */\n\
         export function connect{name}(url: string, options?: ConnectOptions<{state_ty}, {name}Events>): Promise<{name}Connection> {{\n  \
         return connect<{state_ty}, {name}Events>(url, SERVICE, options);\n}}\n"
    );
    let _ =
        writeln!(out, "/** Typed methods of `{name}`; each call rejects with a `CallError` on transport failure. */");
    let _ = writeln!(out, "export class {name}Client {{\n  constructor(readonly connection: {name}Connection) {{}}\n");
    for m in &desc.methods {
        let params: Vec<String> = m.args.iter().map(|(a, s)| format!("{}: {}", camel(a), ts_type(s))).collect();
        let values: Vec<String> = m.args.iter().map(|(a, _)| camel(a)).collect();
        let ret = match &m.output {
            OutputDesc::Plain(s) => ts_type(s),
            OutputDesc::Result { ok, err } => format!("Result<{}, {}>", ts_type(ok), ts_type(err)),
        };
        let mut all = params.clone();
        all.push("options?: CallOptions".into());
        let _ = writeln!(
            out,
            "  /** Method {} of `{name}` (`{}`). */\n  {}({}): Promise<{ret}> {{\n    \
             return this.connection.call(SERVICE.methods[{}], [{}], options) as Promise<{ret}>;\n  }}\n",
            m.id,
            m.name,
            camel(&m.name),
            all.join(", "),
            m.id,
            values.join(", ")
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(camel("send_message"), "sendMessage");
        assert_eq!(camel("get"), "get");
        assert_eq!(ts_type(&Shape::Vec(Box::new(Shape::Option(Box::new(Shape::U64))))), "(bigint | null)[]");
        assert_eq!(shape(&Shape::Array(Box::new(Shape::U8), 4)), "{ k: \"array\", of: { k: \"u8\" }, len: 4 }");
        assert!(check_shape(&Shape::Option(Box::new(Shape::Option(Box::new(Shape::U8))))).is_err());
        assert!(check_shape(&Shape::Vec(Box::new(Shape::Option(Box::new(Shape::U8))))).is_ok());
        let reg = Registry::new();
        assert!(check_zero_sized(&reg, &Shape::Vec(Box::new(Shape::Tuple(vec![])))).is_err());
        assert!(check_zero_sized(&reg, &Shape::Option(Box::new(Shape::Vec(Box::new(Shape::Unit))))).is_err());
        assert!(check_zero_sized(&reg, &Shape::Vec(Box::new(Shape::Array(Box::new(Shape::U8), 1)))).is_ok());
    }
}
