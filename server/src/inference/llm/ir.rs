//! Load-time rewrite of a decoder's IR so the vocabulary projection (`lm_head`) runs for the last
//! position only. During prefill the model otherwise computes logits for every prompt token —
//! hidden × vocabulary multiply-adds per token (1536 × 151936 for DeepSeek-R1-Distill-Qwen-1.5B) —
//! and all but the last are thrown away. openvino-genai does the same slicing with C++ graph
//! transformations; the C API has none, so the IR's XML is edited instead: a `Gather(hidden, [-1],
//! axis 1)` goes between the final norm and `lm_head`.
//!
//! The two small constants it needs point at bytes that already exist in the weights file (an i64
//! -1 and an i64 1 inside existing constants), so the weights file is used untouched and mmapped
//! by OpenVINO as usual.

use std::collections::HashMap;

/// Bumped when the rewrite changes, so cached rewritten IRs are made again.
pub const REWRITE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IrError {
    #[error("IR XML does not parse: {0}")]
    Xml(String),
    #[error("IR has no output named `logits` produced by a MatMul")]
    NoLogitsMatMul,
    #[error("IR weights hold no i64 constants equal to -1 and 1 to reuse")]
    NoConstants,
}

struct Port {
    precision: String,
    dims: Vec<String>,
}

struct Layer<'a> {
    ty: &'a str,
    outputs: HashMap<&'a str, Port>,
    output_names: Vec<(&'a str, &'a str)>, // (port id, comma-separated tensor names)
    inputs: Vec<&'a str>,                  // input port ids, in order
    constant: Option<(&'a str, u64, u64)>, // (element type, offset, size)
}

/// The rewritten XML. `read_weights(offset, len)` returns bytes of the weights file.
pub fn slice_logits_to_last_token(
    xml: &str,
    read_weights: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Result<String, IrError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| IrError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let layers_node =
        root.children().find(|n| n.has_tag_name("layers")).ok_or_else(|| IrError::Xml("no <layers>".into()))?;
    let edges_node =
        root.children().find(|n| n.has_tag_name("edges")).ok_or_else(|| IrError::Xml("no <edges>".into()))?;

    let mut layers: HashMap<&str, Layer> = HashMap::new();
    let mut max_id = 0u64;
    for node in layers_node.children().filter(|n| n.has_tag_name("layer")) {
        let id = node.attribute("id").unwrap_or_default();
        max_id = max_id.max(id.parse().unwrap_or(0));
        layers.insert(id, parse_layer(node));
    }

    // The tensor named `logits`, possibly behind a Convert, must come from a MatMul.
    let (mut producer, _) = layers
        .iter()
        .flat_map(|(id, l)| l.output_names.iter().map(move |(port, names)| (*id, *port, *names)))
        .find(|(_, _, names)| names.split(',').any(|n| n.trim() == "logits"))
        .map(|(id, port, _)| (id, port))
        .ok_or(IrError::NoLogitsMatMul)?;
    let edges: Vec<roxmltree::Node> = edges_node.children().filter(|n| n.has_tag_name("edge")).collect();
    let edge_into = |layer: &str, port: &str| {
        edges.iter().find(|e| e.attribute("to-layer") == Some(layer) && e.attribute("to-port") == Some(port)).copied()
    };
    if layers[producer].ty == "Convert" {
        let first = layers[producer].inputs.first().copied().unwrap_or("0");
        producer = edge_into(producer, first).and_then(|e| e.attribute("from-layer")).ok_or(IrError::NoLogitsMatMul)?;
    }
    let matmul = &layers[producer];
    if matmul.ty != "MatMul" {
        return Err(IrError::NoLogitsMatMul);
    }
    let hidden_edge =
        edge_into(producer, matmul.inputs.first().copied().unwrap_or("0")).ok_or(IrError::NoLogitsMatMul)?;
    let (from_layer, from_port) =
        (hidden_edge.attribute("from-layer").unwrap(), hidden_edge.attribute("from-port").unwrap());
    let hidden = layers.get(from_layer).and_then(|l| l.outputs.get(from_port)).ok_or(IrError::NoLogitsMatMul)?;
    if hidden.dims.len() != 3 {
        return Err(IrError::NoLogitsMatMul);
    }

    let minus_one = find_i64(&layers, &read_weights, -1).ok_or(IrError::NoConstants)?;
    let one = find_i64(&layers, &read_weights, 1).ok_or(IrError::NoConstants)?;
    let (gather, index, axis) = (max_id + 1, max_id + 2, max_id + 3);
    let dims = |d: &[String]| d.iter().map(|v| format!("<dim>{v}</dim>")).collect::<String>();
    let out_dims = [hidden.dims[0].clone(), "1".to_string(), hidden.dims[2].clone()];
    let new_layers = format!(
        r#"<layer id="{index}" name="duet/last_token/index" type="Const" version="opset1"><data element_type="i64" shape="1" offset="{minus_one}" size="8" /><output><port id="0" precision="I64"><dim>1</dim></port></output></layer>
		<layer id="{axis}" name="duet/last_token/axis" type="Const" version="opset1"><data element_type="i64" shape="" offset="{one}" size="8" /><output><port id="0" precision="I64" /></output></layer>
		<layer id="{gather}" name="duet/last_token" type="Gather" version="opset8"><data batch_dims="0" /><input><port id="0" precision="{p}">{in_dims}</port><port id="1" precision="I64"><dim>1</dim></port><port id="2" precision="I64" /></input><output><port id="3" precision="{p}">{out}</port></output></layer>
	"#,
        p = hidden.precision,
        in_dims = dims(&hidden.dims),
        out = dims(&out_dims),
    );
    let to_port = hidden_edge.attribute("to-port").unwrap();
    let new_edges = format!(
        r#"<edge from-layer="{from_layer}" from-port="{from_port}" to-layer="{gather}" to-port="0" />
		<edge from-layer="{index}" from-port="0" to-layer="{gather}" to-port="1" />
		<edge from-layer="{axis}" from-port="0" to-layer="{gather}" to-port="2" />
		<edge from-layer="{gather}" from-port="3" to-layer="{producer}" to-port="{to_port}" />"#
    );

    // Splice from the end of the text backwards so earlier byte ranges stay valid.
    let layers_end = layers_node.range().end - "</layers>".len();
    let edge_range = hidden_edge.range();
    assert!(edge_range.start > layers_end, "edges follow layers in an IR");
    let mut out = String::with_capacity(xml.len() + new_layers.len() + new_edges.len());
    out.push_str(&xml[..layers_end]);
    out.push_str(&new_layers);
    out.push_str(&xml[layers_end..edge_range.start]);
    out.push_str(&new_edges);
    out.push_str(&xml[edge_range.end..]);
    Ok(out)
}

fn parse_layer<'a>(node: roxmltree::Node<'a, 'a>) -> Layer<'a> {
    let ty = node.attribute("type").unwrap_or_default();
    let ports = |tag: &str| {
        node.children()
            .find(|n| n.has_tag_name(tag))
            .map(|n| n.children().filter(|p| p.has_tag_name("port")).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut outputs = HashMap::new();
    let mut output_names = Vec::new();
    for port in ports("output") {
        let id = port.attribute("id").unwrap_or_default();
        if let Some(names) = port.attribute("names") {
            output_names.push((id, names));
        }
        let dims =
            port.children().filter(|d| d.has_tag_name("dim")).map(|d| d.text().unwrap_or("").to_string()).collect();
        outputs.insert(id, Port { precision: port.attribute("precision").unwrap_or("FP32").to_string(), dims });
    }
    let inputs = ports("input").iter().filter_map(|p| p.attribute("id")).collect();
    let constant = (ty == "Const").then(|| node.children().find(|n| n.has_tag_name("data"))).flatten().and_then(|d| {
        Some((d.attribute("element_type")?, d.attribute("offset")?.parse().ok()?, d.attribute("size")?.parse().ok()?))
    });
    Layer { ty, outputs, output_names, inputs, constant }
}

/// Offset in the weights of an 8-byte little-endian i64 equal to `value`, inside a small i64 constant.
fn find_i64(layers: &HashMap<&str, Layer>, read: &impl Fn(u64, usize) -> Option<Vec<u8>>, value: i64) -> Option<u64> {
    let mut candidates: Vec<(u64, u64)> = layers
        .values()
        .filter_map(|l| l.constant)
        .filter(|(ty, _, size)| *ty == "i64" && *size > 0 && *size <= 64 && size % 8 == 0)
        .map(|(_, offset, size)| (offset, size))
        .collect();
    candidates.sort_unstable(); // deterministic choice
    candidates.into_iter().find_map(|(offset, size)| {
        let bytes = read(offset, size as usize)?;
        bytes
            .chunks_exact(8)
            .position(|c| i64::from_le_bytes(c.try_into().unwrap()) == value)
            .map(|i| offset + 8 * i as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// norm(x) → MatMul(lm_head) → Result, with i64 constants [2, -1] at 0 and [1] at 16.
    const XML: &str = r#"<?xml version="1.0"?>
<net name="tiny" version="11">
	<layers>
		<layer id="0" name="hidden" type="Parameter" version="opset1"><data shape="?,?,4" element_type="f32" /><output><port id="0" precision="FP32" names="hidden"><dim>-1</dim><dim>-1</dim><dim>4</dim></port></output></layer>
		<layer id="1" name="shape" type="Const" version="opset1"><data element_type="i64" shape="2" offset="0" size="16" /><output><port id="0" precision="I64"><dim>2</dim></port></output></layer>
		<layer id="2" name="axes" type="Const" version="opset1"><data element_type="i64" shape="1" offset="16" size="8" /><output><port id="0" precision="I64"><dim>1</dim></port></output></layer>
		<layer id="3" name="w" type="Const" version="opset1"><data element_type="f32" shape="6, 4" offset="24" size="96" /><output><port id="0" precision="FP32"><dim>6</dim><dim>4</dim></port></output></layer>
		<layer id="4" name="lm_head" type="MatMul" version="opset1"><data transpose_a="false" transpose_b="true" /><input><port id="0" precision="FP32"><dim>-1</dim><dim>-1</dim><dim>4</dim></port><port id="1" precision="FP32"><dim>6</dim><dim>4</dim></port></input><output><port id="2" precision="FP32" names="logits"><dim>-1</dim><dim>-1</dim><dim>6</dim></port></output></layer>
		<layer id="5" name="out" type="Result" version="opset1"><input><port id="0" precision="FP32"><dim>-1</dim><dim>-1</dim><dim>6</dim></port></input></layer>
	</layers>
	<edges>
		<edge from-layer="0" from-port="0" to-layer="4" to-port="0" />
		<edge from-layer="3" from-port="0" to-layer="4" to-port="1" />
		<edge from-layer="4" from-port="2" to-layer="5" to-port="0" />
	</edges>
</net>"#;

    fn weights(offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut bin: Vec<u8> = [2i64, -1, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        bin.extend([0u8; 96]);
        bin.get(offset as usize..offset as usize + len).map(<[u8]>::to_vec)
    }

    #[test]
    fn inserts_a_last_position_gather_before_lm_head() {
        let out = slice_logits_to_last_token(XML, weights).unwrap();
        let doc = roxmltree::Document::parse(&out).unwrap();
        let layer =
            |id: &str| doc.descendants().find(|n| n.has_tag_name("layer") && n.attribute("id") == Some(id)).unwrap();
        assert_eq!(layer("6").attribute("type"), Some("Gather"));
        // -1 is the second i64 of the constant at offset 0; 1 is the constant at 16.
        let data = |id: &str| layer(id).children().find(|n| n.has_tag_name("data")).unwrap();
        assert_eq!(data("7").attribute("offset"), Some("8"));
        assert_eq!(data("8").attribute("offset"), Some("16"));
        assert_eq!(data("8").attribute("shape"), Some(""));
        let edges: Vec<(String, String)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("edge"))
            .map(|e| {
                (
                    format!("{}:{}", e.attribute("from-layer").unwrap(), e.attribute("from-port").unwrap()),
                    format!("{}:{}", e.attribute("to-layer").unwrap(), e.attribute("to-port").unwrap()),
                )
            })
            .collect();
        let pairs: Vec<(&str, &str)> = edges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            pairs,
            vec![("0:0", "6:0"), ("7:0", "6:1"), ("8:0", "6:2"), ("6:3", "4:0"), ("3:0", "4:1"), ("4:2", "5:0")]
        );
        let gather_out = layer("6")
            .descendants()
            .filter(|n| n.has_tag_name("dim"))
            .skip(4)
            .map(|d| d.text().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(gather_out, vec!["-1", "1", "4"]);
    }

    #[test]
    fn refuses_models_it_does_not_understand() {
        assert_eq!(
            slice_logits_to_last_token(&XML.replace("names=\"logits\"", "names=\"scores\""), weights),
            Err(IrError::NoLogitsMatMul)
        );
        assert_eq!(slice_logits_to_last_token(XML, |_, _| None), Err(IrError::NoConstants));
        assert!(matches!(slice_logits_to_last_token("<net", weights), Err(IrError::Xml(_))));
    }
}
