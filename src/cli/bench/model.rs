//! The benchmark models: their layers in gradus, their input shape, and the matrix-product
//! work of one training sample.

use super::{CLASSES, FEATURES};
use clap::ValueEnum;
use gradus::nn::{self, Activation, LayerSpec};
use serde::{Deserialize, Serialize};

/// Hidden layer sizes of the benchmark MLP.
pub(super) const MLP_HIDDEN: [usize; 2] = [256, 128];
/// Layers of the benchmark CNN before its 10-unit output layer, in `gradus train --model`
/// form. `scripts/bench_torch.py` builds the same layers in PyTorch.
pub(super) const CNN_LAYERS: &str =
    "conv:16x3x3:p1,relu,maxpool:2,conv:32x3x3:p1,relu,maxpool:2,flatten,dense:128,relu";
/// Side of the square Fashion-MNIST images.
const IMAGE_SIDE: usize = 28;

/// The models `gradus bench` trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum BenchModel {
    /// 784-256-128-10 ReLU MLP.
    Mlp,
    /// Two 3×3 convolutions with max pooling, then a 128-unit dense layer.
    Cnn,
}

impl BenchModel {
    pub(super) fn name(self) -> &'static str {
        match self {
            BenchModel::Mlp => "mlp",
            BenchModel::Cnn => "cnn",
        }
    }

    /// Returns the one-line description in the table's header.
    pub(super) fn describe(self) -> String {
        match self {
            BenchModel::Mlp => format!(
                "MLP {FEATURES}-{}-{}-{CLASSES}, ReLU",
                MLP_HIDDEN[0], MLP_HIDDEN[1]
            ),
            BenchModel::Cnn => format!("CNN {CNN_LAYERS},dense:{CLASSES} on 1×28×28"),
        }
    }

    /// Returns the batch sizes measured unless `--batches` is given.
    pub(super) fn default_batches(self) -> Vec<usize> {
        match self {
            BenchModel::Mlp => vec![32, 128, 512],
            BenchModel::Cnn => vec![64],
        }
    }

    /// Returns the shape of one input sample.
    pub(super) fn input_shape(self) -> Vec<usize> {
        match self {
            BenchModel::Mlp => vec![FEATURES],
            BenchModel::Cnn => vec![1, IMAGE_SIDE, IMAGE_SIDE],
        }
    }

    /// Returns the layers, output layer included.
    pub(super) fn layers(self) -> Vec<LayerSpec> {
        match self {
            BenchModel::Mlp => nn::mlp(&MLP_HIDDEN, Activation::Relu, 0.0, CLASSES),
            BenchModel::Cnn => {
                let mut specs = nn::parse_model(CNN_LAYERS).expect("CNN_LAYERS is valid");
                specs.push(LayerSpec::Dense { units: CLASSES });
                specs
            }
        }
    }

    /// Returns the floating-point operations of the matrix products per training sample, 2
    /// per multiply-add, with a convolution counted as its im2col product. Every dense and
    /// convolution layer has a forward and a weight-gradient product, and all but the first
    /// also an input-gradient product. Bias, activation, pooling, loss and update work is not
    /// counted.
    pub(super) fn flops_per_sample(self) -> f64 {
        let mut shape = self.input_shape();
        let mut total = 0.0;
        let mut first = true;
        for spec in self.layers() {
            let (multiply_adds, next) = product_work(&spec, &shape);
            if multiply_adds > 0.0 {
                let products = if first { 2.0 } else { 3.0 };
                total += products * 2.0 * multiply_adds;
                first = false;
            }
            shape = next;
        }
        total
    }
}

/// Returns the multiply-adds of one sample's forward product through `spec` on inputs of
/// `shape` (0 for layers without a product), and the layer's output shape.
fn product_work(spec: &LayerSpec, shape: &[usize]) -> (f64, Vec<usize>) {
    let size: usize = shape.iter().product();
    let spatial = |side: usize, kernel: usize, stride: usize, padding: usize| {
        (side + 2 * padding - kernel) / stride + 1
    };
    match *spec {
        LayerSpec::Dense { units } => ((size * units) as f64, vec![units]),
        LayerSpec::Conv2d {
            filters,
            kernel,
            stride,
            padding,
        } => {
            let [channels, height, width] = [shape[0], shape[1], shape[2]];
            let out_h = spatial(height, kernel[0], stride, padding);
            let out_w = spatial(width, kernel[1], stride, padding);
            let per_output = channels * kernel[0] * kernel[1];
            let work = (filters * out_h * out_w * per_output) as f64;
            (work, vec![filters, out_h, out_w])
        }
        LayerSpec::MaxPool2d { size, stride } | LayerSpec::AvgPool2d { size, stride } => {
            let [channels, height, width] = [shape[0], shape[1], shape[2]];
            let out = |side| spatial(side, size, stride.unwrap_or(size), 0);
            (0.0, vec![channels, out(height), out(width)])
        }
        LayerSpec::Flatten => (0.0, vec![size]),
        _ => (0.0, shape.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_flops_per_sample() {
        // 2 · (2 · 784·256 + 3 · 256·128 + 3 · 128·10)
        let expected = 2.0 * (2.0 * 200_704.0 + 3.0 * 32_768.0 + 3.0 * 1_280.0);
        assert_eq!(BenchModel::Mlp.flops_per_sample(), expected);
    }

    #[test]
    fn cnn_flops_per_sample() {
        // conv 1→16 on 28×28: 16·784·9; conv 16→32 on 14×14: 32·196·144; dense 1568→128;
        // dense 128→10.
        let conv1 = 16.0 * 784.0 * 9.0;
        let rest = 32.0 * 196.0 * 144.0 + 1568.0 * 128.0 + 1280.0;
        let expected = 2.0 * (2.0 * conv1 + 3.0 * rest);
        assert_eq!(BenchModel::Cnn.flops_per_sample(), expected);
    }

    #[test]
    fn cnn_matches_torch_parameter_count() {
        let kernels = std::sync::Arc::new(gradus::tensor::Cpu::new(1));
        let model = BenchModel::Cnn;
        let network =
            gradus::nn::Network::<f32>::new(&model.input_shape(), &model.layers(), kernels)
                .expect("the CNN builds on 1×28×28 images");
        assert_eq!(network.output_size(), CLASSES);
        // PyTorch's Conv2d(1, 16, 3), Conv2d(16, 32, 3), Linear(1568, 128), Linear(128, 10).
        let expected = (16 * 9 + 16) + (32 * 144 + 32) + (1568 * 128 + 128) + (128 * 10 + 10);
        assert_eq!(network.param_count(), expected);
    }
}
