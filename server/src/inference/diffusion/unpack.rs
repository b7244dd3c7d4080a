//! Load-time unpacking of the UNet's int8 linear-layer weights to f32.
//!
//! The SD 1.5 INT8 export keeps every linear layer's weights as u8 with a per-row zero point and
//! f16 scale (`Const u8 → Convert f16 → Subtract zp → Multiply scale → Convert f32 → MatMul`).
//! OpenVINO's CPU plugin runs those as `FullyConnectedCompressed` and, on AVX2, decompresses the
//! weights inside the kernel at every call. With the decompression done once here, the plugin
//! runs plain f32 GEMMs instead. Profiled at 256×256: the linear layers of the UNet's two outer
//! (high-resolution) levels took 0.6-0.8× the time that way; there each weight serves 4-16× more
//! rows than in the inner levels, so the gain per unpacked byte is highest (their 60M weights
//! cost ~390 MiB at peak; all 270M, ~1.8 GiB).
//!
//! The values are the kernel's own arithmetic, `(w - zero_point) * scale` in f32 (exact: an
//! 8-bit integer times an 11-bit significand fits in f32), so the UNet computes the same
//! function; only the GEMM's summation order differs (outputs within ~1e-5).
//!
//! The C API has no graph passes, so the IR's XML is edited: each chain's final `Convert` becomes
//! an f32 `Const` (same id and output port, so the edge into the MatMul stands) pointing past the
//! end of the original weights, and the rest of the chain goes. The caller lays the original
//! `.bin` and the new values out in one buffer ([`crate::inference::weights::ExtendedWeights`]).

use std::collections::{HashMap, HashSet};

/// Which UNet linear layers run on f32 weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnetLinear {
    /// As shipped: int8 weights, decompressed in the kernel (least memory).
    Int8,
    /// The outer half of the UNet's levels in f32, where it buys the most per byte.
    #[default]
    F32Outer,
    /// Every linear layer in f32 (fastest here, ~1.4 GiB more at peak).
    F32,
}

impl std::fmt::Display for UnetLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        f.write_str(self.to_possible_value().expect("no variant is skipped").get_name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    #[error("UNet IR XML does not parse: {0}")]
    Xml(String),
    #[error("UNet weights end before a constant does ({0})")]
    ShortWeights(String),
}

/// One int8 weight chain to replace.
#[derive(Debug, Clone, PartialEq)]
struct Chain {
    /// The `Convert` to f32 that becomes the new `Const`, and its name.
    convert: String,
    name: String,
    out_port: String,
    /// The other layers of the chain, removed.
    removed: Vec<String>,
    rows: usize,
    cols: usize,
    weight: Constant,
    zero_point: Option<Constant>,
    scale: Constant,
}

#[derive(Debug, Clone, PartialEq)]
struct Constant {
    element_type: String,
    offset: usize,
    size: usize,
    /// Elements (1 for a scalar).
    count: usize,
}

/// What to change in one UNet IR: found by [`plan`], written by [`Plan::xml`] and [`Plan::fill`].
pub struct Plan {
    chains: Vec<Chain>,
    /// Each chain's values start here in the tail (64-byte aligned).
    positions: Vec<usize>,
    /// Byte ranges of the XML to drop, or to replace by chain `n`'s constant.
    cuts: Vec<(std::ops::Range<usize>, Option<usize>)>,
    /// Bytes of f32 values the tail needs.
    pub tail_len: usize,
}

struct Layer<'a> {
    node: roxmltree::Node<'a, 'a>,
    ty: &'a str,
    name: &'a str,
    inputs: Vec<&'a str>,
}

/// Find the UNet linear layers of `xml` to unpack; `None` when nothing qualifies (`Int8`, or
/// an IR whose layer names say nothing of its levels).
pub fn plan(xml: &str, which: UnetLinear) -> Result<Option<Plan>, UnpackError> {
    if which == UnetLinear::Int8 {
        return Ok(None);
    }
    let doc = roxmltree::Document::parse(xml).map_err(|e| UnpackError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let child = |tag: &str| {
        root.children().find(|n| n.has_tag_name(tag)).ok_or_else(|| UnpackError::Xml(format!("no <{tag}>")))
    };
    let (layers_node, edges_node) = (child("layers")?, child("edges")?);
    let layers: HashMap<&str, Layer> = layers_node
        .children()
        .filter(|n| n.has_tag_name("layer"))
        .map(|node| {
            let inputs = node
                .children()
                .find(|n| n.has_tag_name("input"))
                .map(|i| i.children().filter(|p| p.has_tag_name("port")).filter_map(|p| p.attribute("id")).collect())
                .unwrap_or_default();
            let layer = Layer {
                node,
                ty: node.attribute("type").unwrap_or_default(),
                name: node.attribute("name").unwrap_or_default(),
                inputs,
            };
            (node.attribute("id").unwrap_or_default(), layer)
        })
        .collect();
    let edges: Vec<roxmltree::Node> = edges_node.children().filter(|n| n.has_tag_name("edge")).collect();
    let mut producer: HashMap<(&str, &str), &str> = HashMap::new();
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for e in &edges {
        let (Some(from), Some(to), Some(to_port)) =
            (e.attribute("from-layer"), e.attribute("to-layer"), e.attribute("to-port"))
        else {
            return Err(UnpackError::Xml("an edge lacks an attribute".into()));
        };
        producer.insert((to, to_port), from);
        *consumers.entry(from).or_default() += 1;
    }
    let input = |layer: &str, port: &str| producer.get(&(layer, port)).copied();

    let matmuls: Vec<&Layer> = layers.values().filter(|l| l.ty == "MatMul").collect();
    let levels = matmuls.iter().filter_map(|l| block_index(l.name, "down_blocks.")).max().map_or(0, |m| m + 1);
    let chosen = |name: &str| match which {
        UnetLinear::Int8 => false,
        UnetLinear::F32 => true,
        UnetLinear::F32Outer => level(name, levels).is_some_and(|l| l < levels / 2),
    };
    let mut chains = Vec::new();
    for mm in matmuls.iter().filter(|l| chosen(l.name)) {
        let (Some(id), Some(port)) = (mm.node.attribute("id"), mm.inputs.get(1)) else { continue };
        if let Some(chain) = match_chain(&layers, &consumers, &input, input(id, port)) {
            chains.push(chain);
        }
    }
    if chains.is_empty() {
        return Ok(None);
    }
    chains.sort_by_key(|c| c.weight.offset);

    let mut positions = Vec::with_capacity(chains.len());
    let mut tail_len = 0usize;
    for chain in &chains {
        tail_len = tail_len.div_ceil(64) * 64;
        positions.push(tail_len);
        tail_len += chain.rows * chain.cols * 4;
    }
    let replaced: HashMap<&str, usize> = chains.iter().enumerate().map(|(i, c)| (c.convert.as_str(), i)).collect();
    let removed: HashSet<&str> = chains.iter().flat_map(|c| c.removed.iter().map(String::as_str)).collect();
    let mut cuts = Vec::new();
    for (id, layer) in &layers {
        if let Some(&i) = replaced.get(id) {
            cuts.push((layer.node.range(), Some(i)));
        } else if removed.contains(id) {
            cuts.push((line_range(xml, layer.node.range()), None));
        }
    }
    for e in &edges {
        let to = e.attribute("to-layer").unwrap_or_default();
        if removed.contains(to) || replaced.contains_key(to) {
            cuts.push((line_range(xml, e.range()), None));
        }
    }
    cuts.sort_by_key(|(r, _)| r.start);
    Ok(Some(Plan { chains, positions, cuts, tail_len }))
}

impl Plan {
    /// Linear layers unpacked, and their weights.
    pub fn size(&self) -> (usize, usize) {
        (self.chains.len(), self.chains.iter().map(|c| c.rows * c.cols).sum())
    }

    /// The rewritten XML of `xml` (the text [`plan`] read), its new constants at `tail_offset`
    /// and after in the weights buffer.
    pub fn xml(&self, xml: &str, tail_offset: usize) -> String {
        let mut out = String::with_capacity(xml.len());
        let mut at = 0;
        for (range, chain) in &self.cuts {
            out.push_str(&xml[at..range.start]);
            if let Some(i) = *chain {
                let c = &self.chains[i];
                out.push_str(&format!(
                    r#"<layer id="{id}" name="{name}/duet_f32" type="Const" version="opset1"><data element_type="f32" shape="{r}, {k}" offset="{offset}" size="{size}" /><output><port id="{port}" precision="FP32"><dim>{r}</dim><dim>{k}</dim></port></output></layer>"#,
                    id = c.convert,
                    name = xml_escape(&c.name),
                    r = c.rows,
                    k = c.cols,
                    offset = tail_offset + self.positions[i],
                    size = c.rows * c.cols * 4,
                    port = c.out_port,
                ));
            }
            at = range.end;
        }
        out.push_str(&xml[at..]);
        out
    }

    /// Write every chain's `(w - zero_point) * scale` as little-endian f32 into `tail`, reading
    /// the int8 values from `weights` (the original `.bin`).
    pub fn fill(&self, weights: &[u8], tail: &mut [u8]) -> Result<(), UnpackError> {
        if tail.len() < self.tail_len {
            return Err(UnpackError::ShortWeights(format!("tail of {} bytes, {} needed", tail.len(), self.tail_len)));
        }
        for (chain, &at) in self.chains.iter().zip(&self.positions) {
            unpack_values(chain, weights, &mut tail[at..at + chain.rows * chain.cols * 4])?;
        }
        Ok(())
    }
}

/// `Convert(f32) ← Multiply(Subtract(Convert(Const w), Convert(Const zp)) | Convert(Const w), Const scale)`,
/// every inner layer used by this chain alone.
fn match_chain<'a>(
    layers: &HashMap<&'a str, Layer<'a>>,
    consumers: &HashMap<&str, usize>,
    input: &dyn Fn(&'a str, &'a str) -> Option<&'a str>,
    convert: Option<&'a str>,
) -> Option<Chain> {
    let sole = |id: &str| consumers.get(id) == Some(&1);
    let layer = |id: &str| layers.get(id);
    let nth_input = |id: &'a str, n: usize| layer(id).and_then(|l| l.inputs.get(n).copied()).and_then(|p| input(id, p));
    let convert = convert?;
    let conv = layer(convert)?;
    if conv.ty != "Convert" || data(conv, "destination_type") != Some("f32") {
        return None;
    }
    let mul = nth_input(convert, 0)?;
    if layer(mul)?.ty != "Multiply" || !sole(mul) {
        return None;
    }
    let (a, b) = (nth_input(mul, 0)?, nth_input(mul, 1)?);
    let (values, scale) = if layer(b)?.ty == "Const" { (a, b) } else { (b, a) };
    let scale_c = constant(layer(scale)?)?;
    let mut removed = vec![mul.to_string()];
    if sole(scale) {
        removed.push(scale.to_string());
    }
    // Weights, with or without a zero point.
    let (weight_convert, zero_point) = if layer(values)?.ty == "Subtract" {
        if !sole(values) {
            return None;
        }
        removed.push(values.to_string());
        let (w, z) = (nth_input(values, 0)?, nth_input(values, 1)?);
        let (z_const, z_removed) = unwrap_convert(layers, |id| nth_input(id, 0), z)?;
        if z_removed.iter().all(|id| sole(id)) {
            removed.extend(z_removed);
        }
        (w, Some(constant(layer(z_const)?)?))
    } else {
        (values, None)
    };
    let (w_const, w_removed) = unwrap_convert(layers, |id| nth_input(id, 0), weight_convert)?;
    if !w_removed.iter().all(|id| sole(id)) {
        return None;
    }
    removed.extend(w_removed);
    let weight = constant(layer(w_const)?)?;
    if !matches!(weight.element_type.as_str(), "u8" | "i8") {
        return None;
    }
    let shape = shape(layer(w_const)?)?;
    let [rows, cols] = shape[..] else { return None };
    // Per-row or per-tensor zero point and scale only.
    let fits = |c: &Constant| c.count == 1 || c.count == rows;
    let known = |c: &Constant| matches!(c.element_type.as_str(), "u8" | "i8" | "f16" | "f32");
    let usable = |c: &Constant| fits(c) && known(c);
    if !usable(&scale_c) || !zero_point.as_ref().is_none_or(usable) {
        return None;
    }
    let out_port = conv
        .node
        .children()
        .find(|n| n.has_tag_name("output"))?
        .children()
        .find(|p| p.has_tag_name("port"))?
        .attribute("id")?
        .to_string();
    Some(Chain {
        convert: convert.to_string(),
        name: conv.name.to_string(),
        out_port,
        removed,
        rows,
        cols,
        weight,
        zero_point,
        scale: scale_c,
    })
}

/// A `Const`, possibly behind one `Convert`: the constant's id and the ids to remove with it.
fn unwrap_convert<'a>(
    layers: &HashMap<&'a str, Layer<'a>>,
    first_input: impl Fn(&'a str) -> Option<&'a str>,
    id: &'a str,
) -> Option<(&'a str, Vec<String>)> {
    match layers.get(id)?.ty {
        "Const" => Some((id, vec![id.to_string()])),
        "Convert" => {
            let source = first_input(id)?;
            (layers.get(source)?.ty == "Const").then(|| (source, vec![id.to_string(), source.to_string()]))
        }
        _ => None,
    }
}

fn data<'a>(l: &Layer<'a>, attribute: &str) -> Option<&'a str> {
    l.node.children().find(|n| n.has_tag_name("data"))?.attribute(attribute)
}

fn shape(l: &Layer) -> Option<Vec<usize>> {
    let s = data(l, "shape")?;
    if s.trim().is_empty() {
        return Some(vec![]);
    }
    s.split(',').map(|d| d.trim().parse().ok()).collect()
}

fn constant(l: &Layer) -> Option<Constant> {
    if l.ty != "Const" {
        return None;
    }
    Some(Constant {
        element_type: data(l, "element_type")?.to_string(),
        offset: data(l, "offset")?.parse().ok()?,
        size: data(l, "size")?.parse().ok()?,
        count: shape(l)?.iter().product(),
    })
}

/// The chain's `(w - zero_point) * scale` as little-endian f32 into `out`.
fn unpack_values(chain: &Chain, weights: &[u8], out: &mut [u8]) -> Result<(), UnpackError> {
    let bytes = |c: &Constant| {
        weights.get(c.offset..c.offset + c.size).ok_or_else(|| UnpackError::ShortWeights(format!("{c:?}")))
    };
    let (w, s) = (bytes(&chain.weight)?, bytes(&chain.scale)?);
    let z = chain.zero_point.as_ref().map(|c| bytes(c).map(|b| (c, b))).transpose()?;
    let width = |c: &Constant| element_size(&c.element_type) * c.count;
    if [Some(&chain.weight), Some(&chain.scale), chain.zero_point.as_ref()]
        .into_iter()
        .flatten()
        .any(|c| c.size < width(c))
    {
        return Err(UnpackError::ShortWeights(format!("{chain:?}")));
    }
    for (row, values) in out.chunks_exact_mut(chain.cols * 4).enumerate().take(chain.rows) {
        let scale = number(&chain.scale, s, row);
        let zero = z.map_or(0.0, |(c, b)| number(c, b, row));
        for (col, value) in values.chunks_exact_mut(4).enumerate() {
            let v = (number(&chain.weight, w, row * chain.cols + col) - zero) * scale;
            value.copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}

fn element_size(element_type: &str) -> usize {
    match element_type {
        "u8" | "i8" => 1,
        "f16" => 2,
        _ => 4,
    }
}

/// Element `i` of constant `c` (its only element when it is a scalar) as f32.
fn number(c: &Constant, raw: &[u8], i: usize) -> f32 {
    let i = if c.count == 1 { 0 } else { i };
    match c.element_type.as_str() {
        "u8" => raw[i] as f32,
        "i8" => raw[i] as i8 as f32,
        "f16" => half::f16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]).to_f32(),
        _ => f32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]),
    }
}

/// `down_blocks.N` / `up_blocks.N` in a layer name.
fn block_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = &name[name.find(prefix)? + prefix.len()..];
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The UNet level a layer works at: 0 is the full latent resolution. Up blocks mirror the down
/// blocks; the mid block and time embedding are at none.
fn level(name: &str, levels: usize) -> Option<usize> {
    if let Some(down) = block_index(name, "down_blocks.") {
        return Some(down);
    }
    let up = block_index(name, "up_blocks.")?;
    levels.checked_sub(up + 1)
}

/// `range` widened to its whole line(s), so removals leave no blank lines behind.
fn line_range(text: &str, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let start = text[..range.start].rfind('\n').map_or(range.start, |i| {
        if text[i + 1..range.start].trim().is_empty() {
            i + 1
        } else {
            range.start
        }
    });
    let end = match text[range.end..].find('\n') {
        Some(i) if text[range.end..range.end + i].trim().is_empty() => range.end + i + 1,
        _ => range.end,
    };
    start..end
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IR with one int8 linear layer per name (weights 2×3 u8, zero point and f16 scale per
    /// row) reading the parameter `x`, and its weights: layer `i`'s values are `i*6 .. i*6+6`,
    /// zero points `[1, 2]`, scales `[0.5, -2.0]`.
    fn ir(names: &[&str]) -> (String, Vec<u8>) {
        let mut layers = String::from(
            r#"<layer id="0" name="x" type="Parameter" version="opset1"><data shape="?,3" element_type="f32" /><output><port id="0" precision="FP32" names="x"><dim>-1</dim><dim>3</dim></port></output></layer>"#,
        );
        let (mut edges, mut bin) = (String::new(), Vec::new());
        for (i, name) in names.iter().enumerate() {
            let id = |k: usize| 1 + 10 * i + k;
            let at = bin.len();
            bin.extend((0..6).map(|v| (i * 6 + v) as u8));
            bin.extend([1u8, 2]);
            bin.extend(half::f16::from_f32(0.5).to_le_bytes());
            bin.extend(half::f16::from_f32(-2.0).to_le_bytes());
            let konst = |k: usize, n: &str, ty: &str, shape: &str, offset: usize, size: usize| {
                format!(
                    r#"<layer id="{}" name="{n}" type="Const" version="opset1"><data element_type="{ty}" shape="{shape}" offset="{offset}" size="{size}" /><output><port id="0" /></output></layer>"#,
                    id(k)
                )
            };
            let op = |k: usize, ty: &str, data: &str, inputs: usize| {
                let ports: String = (0..inputs).map(|p| format!(r#"<port id="{p}" />"#)).collect();
                format!(
                    r#"<layer id="{}" name="{name}/{k}" type="{ty}" version="opset1"><data {data} /><input>{ports}</input><output><port id="{inputs}" /></output></layer>"#,
                    id(k)
                )
            };
            layers += &konst(0, &format!("{name}.weight"), "u8", "2, 3", at, 6);
            layers += &op(1, "Convert", r#"destination_type="f16""#, 1);
            layers += &konst(2, "zp", "u8", "2, 1", at + 6, 2);
            layers += &op(3, "Convert", r#"destination_type="f16""#, 1);
            layers += &op(4, "Subtract", "", 2);
            layers += &konst(5, "scale", "f16", "2, 1", at + 8, 4);
            layers += &op(6, "Multiply", "", 2);
            layers += &op(7, "Convert", r#"destination_type="f32""#, 1);
            layers +=
                &op(8, "MatMul", r#"transpose_a="false" transpose_b="true""#, 2).replace(&format!("{name}/8"), name);
            layers += &op(9, "Result", "", 1).replace(r#"<output><port id="1" /></output>"#, "");
            for (from, port, to, to_port) in [
                (0, 0, 1, 0),
                (1, 1, 4, 0),
                (2, 0, 3, 0),
                (3, 1, 4, 1),
                (4, 2, 6, 0),
                (5, 0, 6, 1),
                (6, 2, 7, 0),
                (7, 1, 8, 1),
                (8, 2, 9, 0),
            ] {
                edges += &format!(
                    r#"<edge from-layer="{}" from-port="{port}" to-layer="{}" to-port="{to_port}" />"#,
                    id(from),
                    id(to)
                );
                edges += "\n";
            }
            edges += &format!(r#"<edge from-layer="0" from-port="0" to-layer="{}" to-port="0" />"#, id(8));
            edges += "\n";
        }
        (format!("<?xml version=\"1.0\"?>\n<net name=\"t\" version=\"11\">\n<layers>\n{layers}\n</layers>\n<edges>\n{edges}</edges>\n</net>\n"), bin)
    }

    const NAMES: [&str; 5] = [
        "__module.down_blocks.0.attn1.to_q/aten::linear/MatMul",
        "__module.down_blocks.1.attn1.to_q/aten::linear/MatMul",
        "__module.mid_block.ff/aten::linear/MatMul",
        "__module.up_blocks.0.ff/aten::linear/MatMul",
        "__module.up_blocks.1.ff/aten::linear/MatMul",
    ];

    fn rewrite(which: UnetLinear) -> Option<(String, Vec<f32>, (usize, usize))> {
        let (xml, bin) = ir(&NAMES);
        let plan = plan(&xml, which).unwrap()?;
        let mut tail = vec![0u8; plan.tail_len];
        plan.fill(&bin, &mut tail).unwrap();
        let values = tail.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        Some((plan.xml(&xml, 1000), values, plan.size()))
    }

    /// The MatMuls left reading a Const, by name, with that Const's (element type, offset).
    fn matmul_weights(xml: &str) -> Vec<(String, String, usize)> {
        let doc = roxmltree::Document::parse(xml).expect("the rewritten IR parses");
        let layers: HashMap<&str, roxmltree::Node> =
            doc.descendants().filter(|n| n.has_tag_name("layer")).map(|n| (n.attribute("id").unwrap(), n)).collect();
        let edges: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("edge")).collect();
        for e in &edges {
            for end in ["from-layer", "to-layer"] {
                assert!(layers.contains_key(e.attribute(end).unwrap()), "an edge names a removed layer: {e:?}");
            }
        }
        let mut out = Vec::new();
        for (id, l) in &layers {
            if l.attribute("type") != Some("MatMul") {
                continue;
            }
            let from = edges
                .iter()
                .find(|e| e.attribute("to-layer") == Some(*id) && e.attribute("to-port") == Some("1"))
                .unwrap();
            let source = layers[from.attribute("from-layer").unwrap()];
            if source.attribute("type") == Some("Const") {
                let data = source.children().find(|n| n.has_tag_name("data")).unwrap();
                let ty = data.attribute("element_type").unwrap().to_string();
                out.push((
                    l.attribute("name").unwrap().to_string(),
                    ty,
                    data.attribute("offset").unwrap().parse().unwrap(),
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn int8_changes_nothing() {
        assert!(rewrite(UnetLinear::Int8).is_none());
        let (xml, _) = ir(&["no_levels_in_this_name/MatMul"]);
        assert!(plan(&xml, UnetLinear::F32Outer).unwrap().is_none(), "names without levels: nothing to choose by");
    }

    #[test]
    fn outer_levels_are_the_first_down_and_last_up_blocks() {
        let (xml, values, size) = rewrite(UnetLinear::F32Outer).unwrap();
        let unpacked = matmul_weights(&xml);
        assert_eq!(
            unpacked,
            vec![(NAMES[0].into(), "f32".into(), 1000), (NAMES[4].into(), "f32".into(), 1064)],
            "two levels: level 0 is down_blocks.0 and up_blocks.1"
        );
        assert_eq!(size, (2, 12));
        // Layer 0: values 0..6, layer 4: 24..30; rows minus zero points [1, 2], times scales [0.5, -2].
        let expect = |first: f32| {
            (0..6).map(move |v| (first + v as f32 - if v < 3 { 1.0 } else { 2.0 }) * if v < 3 { 0.5 } else { -2.0 })
        };
        assert_eq!(values[..6], expect(0.0).collect::<Vec<_>>()[..]);
        assert_eq!(values[16..22], expect(24.0).collect::<Vec<_>>()[..], "the second starts 64-byte aligned");
        // The other chains and their parameter edge stay whole; the unpacked ones leave nothing behind.
        assert_eq!(xml.matches(r#"type="Subtract""#).count(), 3);
        assert_eq!(xml.matches(r#"type="MatMul""#).count(), 5);
        assert!(!xml.contains(&format!("{}.weight", NAMES[0])));
        assert!(xml.contains(&format!("{}.weight", NAMES[1])));
    }

    #[test]
    fn f32_unpacks_every_linear_layer() {
        let (xml, values, size) = rewrite(UnetLinear::F32).unwrap();
        assert_eq!(matmul_weights(&xml).len(), 5);
        assert_eq!(size, (5, 30));
        assert_eq!(values.len(), 4 * 16 + 6);
        assert!(!xml.contains(r#"type="Subtract""#) && !xml.contains(r#"type="Convert""#));
    }

    #[test]
    fn a_weight_shared_with_another_layer_stays_packed() {
        let (xml, _) = ir(&NAMES[..1]);
        // A second consumer of the u8 weights' Convert.
        let shared = xml
            .replace("</edges>", "<edge from-layer=\"2\" from-port=\"1\" to-layer=\"10\" to-port=\"0\" />\n</edges>");
        assert!(plan(&shared, UnetLinear::F32).unwrap().is_none());
    }

    #[test]
    fn the_fixture_unet_unpacks_as_chosen() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/sd/tiny-stable-diffusion-v1-5-int8-ov/unet");
        let xml = std::fs::read_to_string(dir.join("openvino_model.xml")).unwrap();
        let all = plan(&xml, UnetLinear::F32).unwrap().unwrap();
        assert_eq!(all.size().0, xml.matches(r#"type="MatMul""#).count(), "every linear layer of the export is int8");
        let outer = plan(&xml, UnetLinear::F32Outer).unwrap().unwrap();
        let expected = xml
            .match_indices(r#"type="MatMul""#)
            .filter(|(i, _)| {
                let line = &xml[xml[..*i].rfind('\n').unwrap()..*i];
                ["down_blocks.0.", "down_blocks.1.", "up_blocks.2.", "up_blocks.3."].iter().any(|b| line.contains(b))
            })
            .count();
        assert_eq!(outer.size().0, expected, "four levels: the outer two");
        let rewritten = matmul_weights(&outer.xml(&xml, 1 << 20));
        assert_eq!(rewritten.len(), expected);
        assert!(rewritten.iter().all(|(_, ty, offset)| ty == "f32" && *offset >= 1 << 20));
    }
}
