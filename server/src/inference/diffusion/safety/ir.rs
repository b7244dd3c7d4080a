//! The checker exported whole to OpenVINO (optimum's `safety_checker/openvino_model.xml`): it
//! takes `clip_input` and the image and answers `has_nsfw_concepts`.

use crate::inference::diffusion::image_file::RgbImage;
use crate::inference::{f32_tensor, InferenceError, OvContext};
use openvino::{CompiledModel, Core, DeviceType, InferRequest};
use std::path::Path;

pub struct IrChecker {
    _compiled: CompiledModel,
    request: InferRequest,
}

impl IrChecker {
    pub fn load(core: &mut Core, dir: &Path, device: &str) -> Result<Self, InferenceError> {
        let model = crate::inference::diffusion::parts::read_graph(core, dir, "safety_checker")?;
        let mut compiled =
            core.compile_model(&model, DeviceType::from(device)).ov(|| "compiling the safety checker".into())?;
        let request = compiled.create_infer_request().ov(|| "creating a safety checker request".into())?;
        Ok(IrChecker { _compiled: compiled, request })
    }

    pub fn flags(&mut self, clip: &[f32], (ch, cw): (u32, u32), image: &RgbImage) -> Result<bool, InferenceError> {
        let shape = [1, 3, ch as i64, cw as i64];
        let pixels: Vec<f32> = image.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        let images = [1, image.height as i64, image.width as i64, 3];
        for (name, data, shape) in [("clip_input", clip, &shape[..]), ("images", &pixels[..], &images[..])] {
            let tensor = f32_tensor(shape, data)?;
            self.request.set_tensor(name, &tensor).ov(|| format!("setting the safety checker's {name}"))?;
        }
        self.request.infer().ov(|| "running the safety checker".into())?;
        let flag = self.request.get_tensor("has_nsfw_concepts").ov(|| "reading has_nsfw_concepts".into())?;
        let raw = flag.get_raw_data().ov(|| "reading has_nsfw_concepts".into())?;
        Ok(raw.iter().any(|&b| b != 0))
    }
}
