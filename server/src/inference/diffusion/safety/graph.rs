//! The checker's CLIP vision tower and projection as an OpenVINO graph, written as IR XML whose
//! constants point into the safetensors file itself: OpenVINO runs PyTorch's weights where they
//! lie (mapped, not copied), and the few small constants the graph needs (shapes, axes) go in a
//! tail after them. The graph follows transformers' `CLIPVisionModel` + `visual_projection`:
//! patch convolution, class token, positions, pre-norm, encoder layers (attention, quick-GELU
//! MLP), the class token's output through the post-norm, then the projection.

use std::collections::HashMap;
use std::fmt::Write as _;

/// The tower's sizes (transformers' `CLIPVisionConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tower {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub image: usize,
    pub patch: usize,
}

/// One tensor of a safetensors file: where its bytes are (from the file's start) and what they hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub dtype: String,
    pub shape: Vec<i64>,
    pub offset: usize,
    pub size: usize,
}

/// How many bytes of a safetensors file hold its header (the length prefix included), from its
/// first eight bytes.
pub fn header_len(start: &[u8]) -> Option<usize> {
    let len = u64::from_le_bytes(start.get(..8)?.try_into().ok()?);
    // The format caps the header at 100 MB.
    (len > 0 && len < 100_000_000).then_some(8 + len as usize)
}

/// The header of a safetensors file (`head`: at least its first `header_len` bytes) whose whole
/// length is `file_len`: its tensors by name.
pub fn read_header(head: &[u8], file_len: usize) -> Result<HashMap<String, Stored>, String> {
    let Some(data_start) = header_len(head).filter(|&n| n <= head.len() && n <= file_len) else {
        return Err("not a safetensors file (no header)".into());
    };
    let header: serde_json::Value =
        serde_json::from_slice(&head[8..data_start]).map_err(|e| format!("the safetensors header: {e}"))?;
    let mut tensors = HashMap::new();
    for (name, entry) in header.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__") {
        let bad = || format!("the safetensors header's entry {name} is malformed");
        let offsets: Vec<usize> = entry["data_offsets"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .filter_map(|v| v.as_u64().map(|n| n as usize))
            .collect();
        let [begin, end] = offsets[..] else { return Err(bad()) };
        if begin > end || data_start + end > file_len {
            return Err(format!("the tensor {name} lies outside the file"));
        }
        let shape = entry["shape"].as_array().ok_or_else(bad)?.iter().filter_map(|v| v.as_i64()).collect();
        let dtype = entry["dtype"].as_str().ok_or_else(bad)?.to_string();
        tensors.insert(name.clone(), Stored { dtype, shape, offset: data_start + begin, size: end - begin });
    }
    Ok(tensors)
}

/// One layer's output: where it comes from and its shape and element type.
#[derive(Clone, Debug)]
struct Out {
    layer: usize,
    port: usize,
    shape: Vec<i64>,
    ty: Ty,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    F32,
    F16,
    Bf16,
    I64,
}

impl Ty {
    fn element(self) -> &'static str {
        match self {
            Ty::F32 => "f32",
            Ty::F16 => "f16",
            Ty::Bf16 => "bf16",
            Ty::I64 => "i64",
        }
    }
    fn precision(self) -> &'static str {
        match self {
            Ty::F32 => "FP32",
            Ty::F16 => "FP16",
            Ty::Bf16 => "BF16",
            Ty::I64 => "I64",
        }
    }
}

/// The graph being written: its layers, edges, and the small constants for the tail.
struct Ir<'a> {
    tensors: &'a HashMap<String, Stored>,
    layers: String,
    edges: String,
    next: usize,
    /// Where the tail starts in the weights buffer, and what goes there.
    tail_offset: usize,
    tail: Vec<u8>,
}

fn dims(shape: &[i64]) -> String {
    shape.iter().map(|d| format!("<dim>{d}</dim>")).collect()
}

impl Ir<'_> {
    fn layer(&mut self, kind: &str, version: &str, data: &str, inputs: &[&Out], shape: Vec<i64>, ty: Ty) -> Out {
        let id = self.next;
        self.next += 1;
        let _ = write!(self.layers, r#"<layer id="{id}" name="{kind}_{id}" type="{kind}" version="{version}">"#);
        if !data.is_empty() {
            let _ = write!(self.layers, "<data {data}/>");
        }
        if !inputs.is_empty() {
            self.layers.push_str("<input>");
            for (port, input) in inputs.iter().enumerate() {
                let _ = write!(
                    self.layers,
                    r#"<port id="{port}" precision="{}">{}</port>"#,
                    input.ty.precision(),
                    dims(&input.shape)
                );
                let _ = write!(
                    self.edges,
                    r#"<edge from-layer="{}" from-port="{}" to-layer="{id}" to-port="{port}"/>"#,
                    input.layer, input.port
                );
            }
            self.layers.push_str("</input>");
        }
        let port = inputs.len();
        if kind != "Result" {
            let _ = write!(
                self.layers,
                r#"<output><port id="{port}" precision="{}">{}</port></output>"#,
                ty.precision(),
                dims(&shape)
            );
        }
        self.layers.push_str("</layer>\n");
        Out { layer: id, port, shape, ty }
    }

    fn constant(&mut self, ty: Ty, shape: Vec<i64>, offset: usize, size: usize) -> Out {
        let data = format!(
            r#"element_type="{}" shape="{}" offset="{offset}" size="{size}""#,
            ty.element(),
            shape.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        );
        self.layer("Const", "opset1", &data, &[], shape, ty)
    }

    /// Small constants, stored in the tail (8-byte aligned).
    fn tail_const(&mut self, ty: Ty, shape: Vec<i64>, bytes: &[u8]) -> Out {
        self.tail.resize(self.tail.len().next_multiple_of(8), 0);
        let offset = self.tail_offset + self.tail.len();
        self.tail.extend_from_slice(bytes);
        self.constant(ty, shape, offset, bytes.len())
    }

    fn i64s(&mut self, values: &[i64]) -> Out {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tail_const(Ty::I64, vec![values.len() as i64], &bytes)
    }

    fn scalar_i64(&mut self, value: i64) -> Out {
        self.tail_const(Ty::I64, vec![], &value.to_le_bytes())
    }

    fn scalar_f32(&mut self, value: f32) -> Out {
        self.tail_const(Ty::F32, vec![], &value.to_le_bytes())
    }

    /// A stored tensor, checked against the shape the graph expects, read as `shape` (same
    /// values, e.g. a vector as [1, 1, n]); half precision is widened to f32.
    fn weight(&mut self, name: &str, expected: &[i64], shape: &[i64]) -> Result<Out, String> {
        let stored = self.tensors.get(name).ok_or_else(|| format!("model.safetensors has no tensor {name}"))?;
        if stored.shape != expected {
            return Err(format!("{name}: shape {:?}, the configuration needs {expected:?}", stored.shape));
        }
        let ty = match stored.dtype.as_str() {
            "F32" => Ty::F32,
            "F16" => Ty::F16,
            "BF16" => Ty::Bf16,
            other => return Err(format!("{name}: {other} values (only F32, F16 and BF16 are read)")),
        };
        let bytes = if ty == Ty::F32 { 4 } else { 2 };
        if stored.size != expected.iter().product::<i64>() as usize * bytes {
            return Err(format!("{name}: {} bytes do not hold {expected:?} values", stored.size));
        }
        let out = self.constant(ty, shape.to_vec(), stored.offset, stored.size);
        Ok(match ty {
            Ty::F32 => out,
            _ => self.layer("Convert", "opset1", r#"destination_type="f32""#, &[&out], shape.to_vec(), Ty::F32),
        })
    }

    fn binary(&mut self, kind: &str, a: &Out, b: &Out) -> Out {
        let shape = a.shape.clone();
        self.layer(kind, "opset1", r#"auto_broadcast="numpy""#, &[a, b], shape, Ty::F32)
    }

    fn reshape(&mut self, x: &Out, shape: &[i64]) -> Out {
        let target = self.i64s(shape);
        self.layer("Reshape", "opset1", r#"special_zero="false""#, &[x, &target], shape.to_vec(), Ty::F32)
    }

    fn transpose(&mut self, x: &Out, order: &[i64]) -> Out {
        let shape = order.iter().map(|&i| x.shape[i as usize]).collect();
        let order = self.i64s(order);
        self.layer("Transpose", "opset1", "", &[x, &order], shape, Ty::F32)
    }

    /// transformers' `nn.LayerNorm` (eps 1e-5) over the last axis.
    fn layer_norm(&mut self, x: &Out, prefix: &str, hidden: i64) -> Result<Out, String> {
        let axes = self.i64s(&[-1]);
        let normed = self.layer(
            "MVN",
            "opset6",
            r#"eps="1e-05" normalize_variance="true" eps_mode="INSIDE_SQRT""#,
            &[x, &axes],
            x.shape.clone(),
            Ty::F32,
        );
        let gamma = self.weight(&format!("{prefix}.weight"), &[hidden], &[hidden])?;
        let beta = self.weight(&format!("{prefix}.bias"), &[hidden], &[hidden])?;
        let scaled = self.binary("Multiply", &normed, &gamma);
        Ok(self.binary("Add", &scaled, &beta))
    }

    /// `nn.Linear`: x · Wᵀ (+ b), with W stored [out, in] as PyTorch keeps it.
    fn linear(&mut self, x: &Out, prefix: &str, inputs: i64, outputs: i64, bias: bool) -> Result<Out, String> {
        let w = self.weight(&format!("{prefix}.weight"), &[outputs, inputs], &[outputs, inputs])?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("a linear layer's input has axes") = outputs;
        let product =
            self.layer("MatMul", "opset1", r#"transpose_a="false" transpose_b="true""#, &[x, &w], shape, Ty::F32);
        if !bias {
            return Ok(product);
        }
        let b = self.weight(&format!("{prefix}.bias"), &[outputs], &[outputs])?;
        Ok(self.binary("Add", &product, &b))
    }
}

/// The graph (IR XML) and the tail its small constants need, for weights laid out as
/// `[safetensors file | padding up to tail_offset | tail]`. Input `clip_input` [1, 3, S, S]; the
/// one output is the image embedding [1, projection].
pub fn build(
    tensors: &HashMap<String, Stored>,
    tower: &Tower,
    projection: i64,
    tail_offset: usize,
) -> Result<(String, Vec<u8>), String> {
    let mut ir = Ir { tensors, layers: String::new(), edges: String::new(), next: 0, tail_offset, tail: Vec::new() };
    let (h, s, p) = (tower.hidden as i64, tower.image as i64, tower.patch as i64);
    let grid = s / p;
    let tokens = grid * grid + 1;
    let heads = tower.heads as i64;
    let head_dim = h / heads;
    const V: &str = "vision_model.vision_model";

    let input = ir.layer(
        "Parameter",
        "opset1",
        &format!(r#"shape="1,3,{s},{s}" element_type="f32""#),
        &[],
        vec![1, 3, s, s],
        Ty::F32,
    );
    let kernel = ir.weight(&format!("{V}.embeddings.patch_embedding.weight"), &[h, 3, p, p], &[h, 3, p, p])?;
    let conv = ir.layer(
        "Convolution",
        "opset1",
        &format!(r#"strides="{p}, {p}" dilations="1, 1" pads_begin="0, 0" pads_end="0, 0" auto_pad="explicit""#),
        &[&input, &kernel],
        vec![1, h, grid, grid],
        Ty::F32,
    );
    let flat = ir.reshape(&conv, &[1, h, grid * grid]);
    let patches = ir.transpose(&flat, &[0, 2, 1]);
    let class = ir.weight(&format!("{V}.embeddings.class_embedding"), &[h], &[1, 1, h])?;
    let joined = ir.layer("Concat", "opset1", r#"axis="1""#, &[&class, &patches], vec![1, tokens, h], Ty::F32);
    let positions = ir.weight(&format!("{V}.embeddings.position_embedding.weight"), &[tokens, h], &[1, tokens, h])?;
    let embedded = ir.binary("Add", &joined, &positions);
    let mut x = ir.layer_norm(&embedded, &format!("{V}.pre_layrnorm"), h)?;

    let beta = ir.scalar_f32(1.702);
    for l in 0..tower.layers {
        let at = format!("{V}.encoder.layers.{l}");
        let normed = ir.layer_norm(&x, &format!("{at}.layer_norm1"), h)?;
        let mut split = Vec::new();
        for part in ["q_proj", "k_proj", "v_proj"] {
            let projected = ir.linear(&normed, &format!("{at}.self_attn.{part}"), h, h, true)?;
            let per_head = ir.reshape(&projected, &[1, tokens, heads, head_dim]);
            split.push(ir.transpose(&per_head, &[0, 2, 1, 3]));
        }
        // Scaled by 1/sqrt(head_dim) (the operation's default, as CLIP scales), no mask.
        let attended = ir.layer(
            "ScaledDotProductAttention",
            "opset13",
            r#"causal="false""#,
            &[&split[0], &split[1], &split[2]],
            vec![1, heads, tokens, head_dim],
            Ty::F32,
        );
        let merged = ir.transpose(&attended, &[0, 2, 1, 3]);
        let merged = ir.reshape(&merged, &[1, tokens, h]);
        let out = ir.linear(&merged, &format!("{at}.self_attn.out_proj"), h, h, true)?;
        x = ir.binary("Add", &x, &out);
        let normed = ir.layer_norm(&x, &format!("{at}.layer_norm2"), h)?;
        let up = ir.linear(&normed, &format!("{at}.mlp.fc1"), h, tower.intermediate as i64, true)?;
        // quick_gelu: x · sigmoid(1.702 x), which is Swish with β = 1.702.
        let shape = up.shape.clone();
        let act = ir.layer("Swish", "opset4", "", &[&up, &beta], shape, Ty::F32);
        let down = ir.linear(&act, &format!("{at}.mlp.fc2"), tower.intermediate as i64, h, true)?;
        x = ir.binary("Add", &x, &down);
    }

    // The class token's output, post-normed, projected.
    let index = ir.scalar_i64(0);
    let axis = ir.scalar_i64(1);
    let pooled = ir.layer("Gather", "opset8", r#"batch_dims="0""#, &[&x, &index, &axis], vec![1, h], Ty::F32);
    let pooled = ir.layer_norm(&pooled, &format!("{V}.post_layernorm"), h)?;
    let embeds = ir.linear(&pooled, "visual_projection", h, projection, false)?;
    ir.layer("Result", "opset1", "", &[&embeds], vec![], Ty::F32);

    let xml = format!(
        "<?xml version=\"1.0\"?>\n<net name=\"safety_checker\" version=\"11\">\n<layers>\n{}</layers>\n<edges>\n{}\n</edges>\n</net>\n",
        ir.layers, ir.edges
    );
    Ok((xml, ir.tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &[i64], usize)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut at = 0;
        for (name, dtype, shape, size) in entries {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + size]}),
            );
            at += size;
        }
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let text = serde_json::to_vec(&header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(vec![0u8; at]);
        out
    }

    #[test]
    fn the_header_gives_each_tensor_its_place_in_the_file() {
        let bytes = file(&[("a", "F32", &[2, 3], 24), ("b", "F16", &[4], 8)]);
        let tensors = read_header(&bytes, bytes.len()).unwrap();
        let start = bytes.len() - 32;
        assert_eq!(tensors["a"], Stored { dtype: "F32".into(), shape: vec![2, 3], offset: start, size: 24 });
        assert_eq!(tensors["b"].offset, start + 24);
        assert!(!tensors.contains_key("__metadata__"));
        assert!(read_header(b"short", 5).is_err());
        assert!(read_header(&bytes, bytes.len() - 1).unwrap_err().contains("outside the file"));
    }

    #[test]
    fn a_weight_of_the_wrong_shape_or_type_is_named() {
        let bytes = file(&[("w", "F32", &[2, 3], 24), ("i", "I8", &[4], 4)]);
        let tensors = read_header(&bytes, bytes.len()).unwrap();
        let mut ir = Ir {
            tensors: &tensors,
            layers: String::new(),
            edges: String::new(),
            next: 0,
            tail_offset: 0,
            tail: vec![],
        };
        assert!(ir.weight("w", &[3, 2], &[3, 2]).unwrap_err().contains("shape [2, 3]"));
        assert!(ir.weight("i", &[4], &[4]).unwrap_err().contains("I8"));
        assert!(ir.weight("missing", &[1], &[1]).unwrap_err().contains("no tensor missing"));
        assert!(ir.weight("w", &[2, 3], &[1, 6]).is_ok());
    }
}
