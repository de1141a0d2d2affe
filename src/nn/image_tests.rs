//! Tests of the image layers (convolution, pooling, flattening), batch normalisation, the
//! network's buffers and the model description parser.

use super::tests::{random_vec, relative_error, Case};
use super::*;
use crate::data::{self, CsvOptions, Source};
use crate::objective::{Counter, NetworkObjective, Objective};
use crate::tensor::Cpu;
use rand::{Rng as _, SeedableRng};
use std::sync::Arc;

fn conv(filters: usize, k: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        filters,
        kernel: [k, k],
        stride,
        padding,
    }
}

fn act(function: Activation) -> LayerSpec {
    LayerSpec::Activation { function }
}

fn dense(units: usize) -> LayerSpec {
    LayerSpec::Dense { units }
}

fn pass<'a>(cpu: &'a Cpu, batch: usize, mode: Mode, buffers: &'a [f64]) -> Pass<'a, f64> {
    Pass {
        kernels: cpu,
        batch,
        mode,
        seed: 0,
        buffers,
    }
}

/// Sets every running mean in [-0.5, 0.5] and every running variance in [0.5, 2].
fn set_random_running_statistics(net: &Network<f64>, seed: u64) {
    let mut rng = Rng::seed_from_u64(seed);
    let mut buffers = net.buffers();
    for (layer, range) in net.layers().iter().zip(net.buffer_ranges()) {
        for tensor in layer.buffer_tensors() {
            let values = &mut buffers[range.start + tensor.range.start..][..tensor.range.len()];
            for v in values {
                *v = match tensor.name {
                    "running_var" => rng.random_range(0.5..2.0),
                    _ => rng.random_range(-0.5..0.5),
                };
            }
        }
    }
    net.set_buffers(&buffers).expect("buffer length");
}

// Forward values.

#[test]
fn conv_forward_matches_hand_computed() {
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let cpu = Cpu::new(1);

    // A 2x2 kernel [[1, 2], [3, 4]] without padding: y00 = 1·1 + 2·2 + 3·4 + 4·5 = 37.
    let layer = Conv2d::new(&[1, 3, 3], 1, [2, 2], 1, 0).expect("valid conv");
    let params = [1.0, 2.0, 3.0, 4.0, 0.5];
    let mut y = vec![0.0; 4];
    let mut scratch = vec![0.0; Layer::<f64>::scratch_size(&layer, 1)];
    layer.forward(
        &pass(&cpu, 1, Mode::Eval, &[]),
        &params,
        &x,
        &mut y,
        &mut scratch,
    );
    assert_eq!(y, [37.5, 47.5, 67.5, 77.5]);

    // A 3x3 kernel of ones with padding 1 and stride 2 sums the corner neighbourhoods.
    let layer = Conv2d::new(&[1, 3, 3], 1, [3, 3], 2, 1).expect("valid conv");
    let mut params = vec![1.0; 10];
    params[9] = -1.0;
    let mut scratch = vec![0.0; Layer::<f64>::scratch_size(&layer, 1)];
    layer.forward(
        &pass(&cpu, 1, Mode::Eval, &[]),
        &params,
        &x,
        &mut y,
        &mut scratch,
    );
    assert_eq!(y, [11.0, 15.0, 23.0, 27.0]);
}

/// Direct convolution of `[n, c, h, w]` inputs with `[f, c, kh, kw]` weights.
#[allow(clippy::too_many_arguments)]
fn direct_conv(
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    [n, c, h, w]: [usize; 4],
    [kh, kw]: [usize; 2],
    stride: usize,
    padding: usize,
) -> Vec<f64> {
    let (oh, ow) = (
        (h + 2 * padding - kh) / stride + 1,
        (w + 2 * padding - kw) / stride + 1,
    );
    let mut y = Vec::new();
    for s in 0..n {
        for (o, &b) in bias.iter().enumerate() {
            for r in 0..oh {
                for q in 0..ow {
                    let mut sum = b;
                    for ch in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (r * stride + i) as isize - padding as isize;
                                let iw = (q * stride + j) as isize - padding as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xi = ((s * c + ch) * h + ih as usize) * w + iw as usize;
                                let wi = ((o * c + ch) * kh + i) * kw + j;
                                sum += x[xi] * weight[wi];
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
    }
    y
}

#[test]
fn conv_forward_matches_direct_loops() {
    let mut rng = Rng::seed_from_u64(21);
    let cpu = Cpu::new(2);
    let (n, c, h, w, f) = (5, 2, 5, 4, 3);
    for (kernel, stride, padding) in [([3, 2], 2, 1), ([1, 1], 1, 0), ([2, 3], 1, 2)] {
        let layer = Conv2d::new(&[c, h, w], f, kernel, stride, padding).expect("valid conv");
        let params = random_vec(Layer::<f64>::param_count(&layer), &mut rng);
        let x = random_vec(n * c * h * w, &mut rng);
        let (weight, bias) = params.split_at(f * c * kernel[0] * kernel[1]);
        let expected = direct_conv(&x, weight, bias, [n, c, h, w], kernel, stride, padding);
        for chunk in [1, 2, 5] {
            let layer = Conv2d::new(&[c, h, w], f, kernel, stride, padding)
                .expect("valid conv")
                .with_chunk(chunk);
            let mut y = vec![0.0; expected.len()];
            let mut scratch = vec![0.0; Layer::<f64>::scratch_size(&layer, n)];
            layer.forward(
                &pass(&cpu, n, Mode::Eval, &[]),
                &params,
                &x,
                &mut y,
                &mut scratch,
            );
            let err = relative_error(&y, &expected);
            assert!(
                err < 1e-14,
                "{kernel:?} stride {stride} chunk {chunk}: {err:e}"
            );
        }
    }
}

#[test]
fn conv_chunks_give_same_passes() {
    let mut rng = Rng::seed_from_u64(22);
    let cpu = Cpu::new(1);
    let n = 5;
    let shape = [2, 5, 5];
    let whole = Conv2d::new(&shape, 3, [3, 3], 2, 1).expect("valid conv");
    let chunked = Conv2d::new(&shape, 3, [3, 3], 2, 1)
        .expect("valid conv")
        .with_chunk(2);

    let p = Layer::<f64>::param_count(&whole);
    let (n_in, n_out) = (n * 50, n * Layer::<f64>::output_size(&whole));
    let [params, v] = [p, p].map(|len| random_vec(len, &mut rng));
    let [x, rx] = [n_in, n_in].map(|len| random_vec(len, &mut rng));
    let [dy, rdy] = [n_out, n_out].map(|len| random_vec(len, &mut rng));

    // Runs the four passes and returns everything they write.
    let run = |layer: &Conv2d| {
        let ps = pass(&cpu, n, Mode::Eval, &[]);
        let mut scratch = vec![0.0; Layer::<f64>::scratch_size(layer, n)];
        let mut y = vec![0.0; n_out];
        layer.forward(&ps, &params, &x, &mut y, &mut scratch);

        let act = || Activations { x: &x, y: &y };
        let (mut dx, mut dp) = (vec![0.0; n_in], vec![0.0; p]);
        layer.backward(
            &ps,
            &params,
            act(),
            &dy,
            Some(&mut dx),
            &mut dp,
            &mut scratch,
        );

        let mut ry = vec![0.0; n_out];
        layer.tangent(&ps, &params, &v, act(), Some(&rx), &mut ry, &mut scratch);

        let (mut rdx, mut rdp) = (vec![0.0; n_in], vec![0.0; p]);
        let (rx, rdx_out) = (Some(rx.as_slice()), Some(rdx.as_mut_slice()));
        layer.backward_tangent(
            &ps,
            &params,
            &v,
            act(),
            rx,
            &dy,
            &rdy,
            rdx_out,
            &mut rdp,
            &mut scratch,
        );
        [y.clone(), dx, dp, ry, rdx, rdp]
    };

    let names = ["y", "dx", "dparams", "ry", "rdx", "rdparams"];
    for ((a, b), name) in run(&whole).iter().zip(run(&chunked)).zip(names) {
        let err = relative_error(a, &b);
        assert!(err < 1e-14, "{name}: {err:e}");
    }
}

#[test]
fn max_pool_takes_first_of_equal_maxima() {
    let cpu = Cpu::new(1);
    let layer = MaxPool2d::new(&[1, 2, 4], 2, None).expect("valid pool");
    // Windows [[1, 3], [3, 2]] and [[-1, -5], [-2, -1]].
    let x = [1.0, 3.0, -1.0, -5.0, 3.0, 2.0, -2.0, -1.0];
    let mut y = [0.0; 2];
    let mut scratch = vec![0.0; Layer::<f64>::scratch_size(&layer, 1)];
    let ps = pass(&cpu, 1, Mode::Eval, &[]);
    layer.forward(&ps, &[], &x, &mut y, &mut scratch);
    assert_eq!(y, [3.0, -1.0]);
    let mut dx = [9.0; 8];
    let act = Activations { x: &x, y: &y };
    layer.backward(
        &ps,
        &[],
        act,
        &[10.0, 20.0],
        Some(&mut dx),
        &mut [],
        &mut scratch,
    );
    assert_eq!(dx, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_pool_propagates_nan() {
    let cpu = Cpu::new(1);
    let layer = MaxPool2d::new(&[1, 2, 2], 2, None).expect("valid pool");
    let mut y = [0.0; 1];
    let mut scratch = vec![0.0; Layer::<f64>::scratch_size(&layer, 1)];
    let x = [1.0, f64::NAN, 5.0, 2.0];
    layer.forward(
        &pass(&cpu, 1, Mode::Eval, &[]),
        &[],
        &x,
        &mut y,
        &mut scratch,
    );
    assert!(y[0].is_nan(), "got {}", y[0]);
}

#[test]
fn avg_pool_forward_matches_hand_computed() {
    let cpu = Cpu::new(1);
    // Overlapping 2x2 windows with stride 1 over [[1, 2, 3], [4, 5, 6]].
    let layer = AvgPool2d::new(&[1, 2, 3], 2, Some(1)).expect("valid pool");
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut y = [0.0; 2];
    let ps = pass(&cpu, 1, Mode::Eval, &[]);
    layer.forward(&ps, &[], &x, &mut y, &mut []);
    assert_eq!(y, [3.0, 4.0]);
    let mut dx = [0.0; 6];
    let act = Activations { x: &x, y: &y };
    layer.backward(&ps, &[], act, &[4.0, 8.0], Some(&mut dx), &mut [], &mut []);
    assert_eq!(dx, [1.0, 3.0, 2.0, 1.0, 3.0, 2.0]);
}

// Derivatives against finite differences.

#[test]
fn conv_derivatives_match_finite_differences() {
    let specs = vec![
        conv(3, 3, 1, 0),
        act(Activation::Tanh),
        // Stride 2 and padding 1, with an input tangent from the layer before.
        conv(2, 3, 2, 1),
        dense(3),
    ];
    let case = Case::new(specs, &[2, 5, 5], Loss::SoftmaxCrossEntropy, 31);
    case.check(Mode::Eval, "conv");

    let specs = vec![
        LayerSpec::Conv2d {
            filters: 2,
            kernel: [2, 3],
            stride: 2,
            padding: 1,
        },
        act(Activation::Sigmoid),
        dense(2),
    ];
    let case = Case::new(specs, &[1, 4, 5], Loss::MeanSquaredError, 32);
    case.check(Mode::Eval, "conv 2x3 stride 2 padding 1");
}

#[test]
fn max_pool_derivatives_match_finite_differences() {
    let specs = vec![
        conv(2, 3, 1, 1),
        LayerSpec::MaxPool2d {
            size: 2,
            stride: None,
        },
        act(Activation::Tanh),
        dense(3),
    ];
    let case = Case::new(specs, &[1, 6, 6], Loss::SoftmaxCrossEntropy, 33);
    case.check(Mode::Eval, "max pool");

    // Overlapping windows route several outputs to one input.
    let specs = vec![
        conv(2, 2, 1, 0),
        LayerSpec::MaxPool2d {
            size: 3,
            stride: Some(1),
        },
        dense(2),
    ];
    let case = Case::new(specs, &[2, 5, 5], Loss::MeanSquaredError, 34);
    case.check(Mode::Eval, "overlapping max pool");
}

#[test]
fn avg_pool_derivatives_match_finite_differences() {
    let specs = vec![
        conv(2, 3, 1, 1),
        LayerSpec::AvgPool2d {
            size: 2,
            stride: Some(1),
        },
        act(Activation::Softplus),
        dense(3),
    ];
    let case = Case::new(specs, &[2, 4, 4], Loss::SoftmaxCrossEntropy, 35);
    case.check(Mode::Eval, "avg pool");
}

#[test]
fn flatten_derivatives_match_finite_differences() {
    let specs = vec![
        conv(2, 2, 1, 0),
        LayerSpec::Flatten,
        act(Activation::Gelu),
        dense(3),
    ];
    let case = Case::new(specs, &[1, 3, 4], Loss::SoftmaxCrossEntropy, 36);
    case.check(Mode::Eval, "flatten after conv");

    let specs = vec![LayerSpec::Flatten, dense(2)];
    let case = Case::new(specs, &[2, 2, 3], Loss::MeanSquaredError, 37);
    case.check(Mode::Eval, "flatten first");
}

#[test]
fn batch_norm_2d_derivatives_match_in_both_modes() {
    let specs = vec![
        conv(3, 3, 1, 1),
        LayerSpec::BatchNorm,
        act(Activation::Tanh),
        dense(3),
    ];
    let case = Case::new(specs, &[2, 4, 4], Loss::SoftmaxCrossEntropy, 38);
    case.check(Mode::Train, "batch norm 2d train");
    set_random_running_statistics(&case.net, 1);
    case.check(Mode::Eval, "batch norm 2d eval");
}

#[test]
fn batch_norm_1d_derivatives_match_in_both_modes() {
    let specs = vec![
        dense(4),
        LayerSpec::BatchNorm,
        act(Activation::Sigmoid),
        dense(3),
    ];
    for loss in [Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError] {
        let case = Case::new(specs.clone(), &[3], loss, 39);
        case.check(Mode::Train, &format!("batch norm 1d train with {loss}"));
        set_random_running_statistics(&case.net, 2);
        case.check(Mode::Eval, &format!("batch norm 1d eval with {loss}"));
    }
}

#[test]
fn batch_norm_first_layer_derivatives_match() {
    for shape in [&[4][..], &[2, 2, 3][..]] {
        let specs = vec![LayerSpec::BatchNorm, act(Activation::Tanh), dense(3)];
        let case = Case::new(specs, shape, Loss::SoftmaxCrossEntropy, 40);
        case.check(Mode::Train, &format!("batch norm first on {shape:?} train"));
        set_random_running_statistics(&case.net, 3);
        case.check(Mode::Eval, &format!("batch norm first on {shape:?} eval"));
    }
}

#[test]
fn mixed_cnn_derivatives_match_in_both_modes() {
    let specs = vec![
        conv(3, 3, 1, 1),
        act(Activation::Relu),
        LayerSpec::MaxPool2d {
            size: 2,
            stride: None,
        },
        LayerSpec::BatchNorm,
        conv(2, 3, 2, 1),
        act(Activation::Tanh),
        LayerSpec::Flatten,
        dense(4),
        LayerSpec::BatchNorm,
        act(Activation::Gelu),
        dense(3),
    ];
    let case = Case::new(specs, &[1, 8, 8], Loss::SoftmaxCrossEntropy, 41);
    case.check(Mode::Train, "mixed cnn train");
    set_random_running_statistics(&case.net, 4);
    case.check(Mode::Eval, "mixed cnn eval");
}

// Batch normalisation statistics and the network's buffers.

#[test]
fn batch_norm_train_normalises_and_updates_running_statistics() {
    let net = Network::<f64>::new(&[2, 1, 3], &[LayerSpec::BatchNorm], Arc::new(Cpu::new(1)))
        .expect("network");
    assert_eq!(net.buffer_ranges().to_vec(), vec![0..4]);
    assert_eq!(net.buffers(), [0.0, 0.0, 1.0, 1.0]);
    let params = net.init_params(Init::Auto, 0);
    assert_eq!(params, [1.0, 1.0, 0.0, 0.0]);
    // Two samples; channel 0 contains 1..=6 and channel 1 contains 10, 20, ..., 60.
    let x = [
        1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, 40.0, 50.0, 60.0,
    ];
    let mut ws = net.workspace(2);
    let y = net
        .forward(&mut ws, &params, &x, 2, Mode::Train, 0)
        .to_vec();

    // Channel 0: mean 3.5, biased variance 35 / 12, unbiased 3.5.
    let inv_std = 1.0 / (35.0f64 / 12.0 + BATCH_NORM_EPSILON).sqrt();
    for (got, value) in [y[0], y[1], y[2], y[6], y[7], y[8]].iter().zip(1..=6) {
        let expected = (f64::from(value) - 3.5) * inv_std;
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }
    let buffers = net.buffers();
    let expected = [0.35, 3.5, 0.9 + 0.1 * 3.5, 0.9 + 0.1 * 350.0];
    for (got, want) in buffers.iter().zip(expected) {
        assert!((got - want).abs() < 1e-12, "buffers {buffers:?}");
    }

    // Evaluation uses the running statistics and leaves them unchanged.
    let y = net.forward(&mut ws, &params, &x, 2, Mode::Eval, 0).to_vec();
    let expected = (1.0 - 0.35) / (0.9 + 0.35 + BATCH_NORM_EPSILON).sqrt();
    assert!((y[0] - expected).abs() < 1e-12, "{} vs {expected}", y[0]);
    assert_eq!(net.buffers(), buffers);
}

#[test]
fn set_buffers_rejects_wrong_length() {
    let specs = [dense(3), LayerSpec::BatchNorm, dense(2)];
    let net = Network::<f32>::new(&[4], &specs, Arc::new(Cpu::new(1))).expect("network");
    assert_eq!(net.buffer_ranges(), &[0..0, 0..6, 6..6]);
    assert_eq!(net.buffer_count(), 6);
    let err = net.set_buffers(&[0.0; 5]).expect_err("wrong length");
    assert!(matches!(err, crate::Error::Shape(_)), "{err}");
    net.set_buffers(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .expect("right length");
    assert_eq!(net.buffers(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn image_network_f32_matches_f64() {
    let specs =
        parse_model("conv:4x3x3:p1,relu,maxpool:2,batchnorm,flatten,dense:5").expect("model");
    let n64 = Network::<f64>::new(&[1, 6, 6], &specs, Arc::new(Cpu::new(2))).expect("network");
    let n32 = Network::<f32>::new(&[1, 6, 6], &specs, Arc::new(Cpu::new(2))).expect("network");
    let p64 = n64.init_params(Init::Auto, 5);
    let p32: Vec<f32> = p64.iter().map(|&v| v as f32).collect();
    let x64: Vec<f64> = (0..3 * 36).map(|i| (i as f64 * 0.7).sin()).collect();
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let (mut w64, mut w32) = (n64.workspace(3), n32.workspace(3));
    for mode in [Mode::Train, Mode::Eval] {
        let y64 = n64.forward(&mut w64, &p64, &x64, 3, mode, 0).to_vec();
        let y32 = n32.forward(&mut w32, &p32, &x32, 3, mode, 0);
        for (a, b) in y64.iter().zip(y32) {
            assert!((a - *b as f64).abs() < 1e-4, "{mode:?}: {a} vs {b}");
        }
    }
}

// Shapes and descriptions.

fn shape_error(input: &[usize], specs: &[LayerSpec]) -> String {
    match Network::<f32>::new(input, specs, Arc::new(Cpu::new(1))) {
        Ok(_) => panic!("{specs:?} on {input:?} built"),
        Err(err @ crate::Error::Shape(_)) => err.to_string(),
        Err(other) => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn shape_errors_name_layer_and_shapes() {
    let err = shape_error(&[64], &[conv(8, 3, 1, 0)]);
    for part in [
        "layer 0",
        "conv2d(8, 3x3)",
        "[64]",
        "[channels, height, width]",
    ] {
        assert!(err.contains(part), "{part:?} missing in {err}");
    }

    let err = shape_error(&[1, 3, 3], &[act(Activation::Relu), conv(2, 5, 1, 0)]);
    for part in ["layer 1", "conv2d(2, 5x5)", "[1, 3, 3]", "5x5", "3x3"] {
        assert!(err.contains(part), "{part:?} missing in {err}");
    }

    let pool = LayerSpec::MaxPool2d {
        size: 3,
        stride: None,
    };
    let err = shape_error(&[1, 4, 4], &[conv(2, 3, 1, 0), pool]);
    for part in ["layer 1", "max-pool2d(3)", "[2, 2, 2]"] {
        assert!(err.contains(part), "{part:?} missing in {err}");
    }

    let err = shape_error(&[1, 4, 4], &[LayerSpec::Flatten, conv(2, 1, 1, 0)]);
    for part in ["layer 1", "[16]"] {
        assert!(err.contains(part), "{part:?} missing in {err}");
    }
}

#[test]
fn zero_stride_is_an_invalid_setting() {
    let pool = LayerSpec::AvgPool2d {
        size: 2,
        stride: Some(0),
    };
    let err = Network::<f32>::new(&[1, 4, 4], &[pool], Arc::new(Cpu::new(1)))
        .err()
        .expect("error");
    assert!(
        matches!(&err, crate::Error::InvalidSetting { name, .. } if name.contains("layer 0")),
        "{err}"
    );
}

#[test]
fn layer_specs_read_json_with_defaults() {
    let read = |json: &str| serde_json::from_str::<LayerSpec>(json).expect(json);
    assert_eq!(
        read(r#"{"type": "conv2d", "filters": 8, "kernel": [3, 5]}"#),
        LayerSpec::Conv2d {
            filters: 8,
            kernel: [3, 5],
            stride: 1,
            padding: 0
        }
    );
    assert_eq!(
        read(r#"{"type": "max-pool2d", "size": 2}"#),
        LayerSpec::MaxPool2d {
            size: 2,
            stride: None
        }
    );
    assert_eq!(
        read(r#"{"type": "avg-pool2d", "size": 3, "stride": 1}"#),
        LayerSpec::AvgPool2d {
            size: 3,
            stride: Some(1)
        }
    );
    assert_eq!(read(r#"{"type": "flatten"}"#), LayerSpec::Flatten);
    assert_eq!(read(r#"{"type": "batch-norm"}"#), LayerSpec::BatchNorm);
    let specs =
        parse_model("conv:4x3x3:s2:p1,maxpool:2,avgpool:2:s1,flatten,batchnorm").expect("model");
    let json = serde_json::to_string(&specs).expect("json");
    let back: Vec<LayerSpec> = serde_json::from_str(&json).expect("read back");
    assert_eq!(back, specs);
}

#[test]
fn parse_model_reads_every_layer() {
    let text = "conv:32x3x3,relu,maxpool:2,conv:64x3x3:p1,relu,maxpool:2,flatten,dense:128,\
                relu,dropout:0.25,batchnorm";
    let specs = parse_model(text).expect("valid model");
    let relu = act(Activation::Relu);
    let pool = LayerSpec::MaxPool2d {
        size: 2,
        stride: None,
    };
    let expected = vec![
        conv(32, 3, 1, 0),
        relu.clone(),
        pool.clone(),
        conv(64, 3, 1, 1),
        relu.clone(),
        pool,
        LayerSpec::Flatten,
        dense(128),
        relu,
        LayerSpec::Dropout { rate: 0.25 },
        LayerSpec::BatchNorm,
    ];
    assert_eq!(specs, expected);
}

#[test]
fn parse_model_reads_options_and_spaces() {
    let specs = parse_model(" conv:8x5:p2:s2 , avgpool:3:s2, leaky-relu,gelu ").expect("model");
    let expected = vec![
        conv(8, 5, 2, 2),
        LayerSpec::AvgPool2d {
            size: 3,
            stride: Some(2),
        },
        act(Activation::LeakyRelu),
        act(Activation::Gelu),
    ];
    assert_eq!(specs, expected);
    assert_eq!(parse_model("").expect("empty"), vec![]);
    assert_eq!(parse_model("  ").expect("blank"), vec![]);
    assert_eq!(
        parse_model("conv:1x2x3:p0").expect("model"),
        vec![LayerSpec::Conv2d {
            filters: 1,
            kernel: [2, 3],
            stride: 1,
            padding: 0
        }]
    );
}

#[test]
fn parse_model_errors_name_token_and_position() {
    let cases = [
        ("conv:32x3x", "layer 1 \"conv:32x3x\" at character 1"),
        ("relu, conv:0x3x3", "layer 2 \"conv:0x3x3\" at character 7"),
        ("relu,maxpool:0", "layer 2 \"maxpool:0\" at character 6"),
        ("maxpool:2:2", "layer 1 \"maxpool:2:2\""),
        ("dense", "layer 1 \"dense\""),
        ("dense:12:3", "layer 1 \"dense:12:3\""),
        ("dropout:1.5", "layer 1 \"dropout:1.5\""),
        ("relu,,tanh", "layer 2 \"\" at character 6"),
        ("relu,softmax", "layer 2 \"softmax\" at character 6"),
        ("conv:8x3x3:q1", "layer 1 \"conv:8x3x3:q1\""),
        ("conv:8x3x3:s1:s2", "layer 1 \"conv:8x3x3:s1:s2\""),
        ("conv:8x3x3:s0", "layer 1 \"conv:8x3x3:s0\""),
        ("batchnorm:3", "layer 1 \"batchnorm:3\""),
        ("relu:2", "layer 1 \"relu:2\""),
        ("relu,", "layer 2 \"\" at character 6"),
    ];
    for (text, part) in cases {
        let err = parse_model(text).expect_err(text).to_string();
        assert!(err.contains(part), "{text:?}: {part:?} missing in {err}");
        assert!(
            err.contains("expected"),
            "{text:?}: no expected form in {err}"
        );
    }
}

// Training.

#[test]
fn small_cnn_learns_digits() {
    let loaded = data::load(&Source::Builtin("digits".into()), &CsvOptions::default())
        .expect("built-in digits");
    let digits = loaded.train;
    assert_eq!(digits.sample_dims, [1, 8, 8]);
    let n = 512;
    let indices: Vec<usize> = (0..n).collect();
    let mut x = vec![0.0f32; n * 64];
    let mut t = vec![0.0f32; n * 10];
    digits.gather_features(&indices, &mut x);
    digits.gather_targets(&indices, &mut t);
    x.iter_mut().for_each(|v| *v /= 16.0);

    let mut specs = parse_model("conv:4x3x3:p1,relu,maxpool:2,batchnorm,flatten").expect("model");
    specs.push(dense(10));
    let net =
        Network::<f32>::new(&digits.sample_dims, &specs, Arc::new(Cpu::new(2))).expect("network");
    let mut theta = net.init_params(Init::Auto, 1);
    let loss = Loss::SoftmaxCrossEntropy;
    let full_loss = |theta: &[f32]| {
        let mut ws = net.workspace(n);
        let z = net.forward(&mut ws, theta, &x, n, Mode::Eval, 0);
        loss.value(z, &t, n)
    };
    let counter = Arc::new(Counter::default());
    let batch = 64;
    let epoch = |theta: &mut [f32]| {
        let mut grad = vec![0.0f32; theta.len()];
        for (b, (xb, tb)) in x.chunks(batch * 64).zip(t.chunks(batch * 10)).enumerate() {
            let counter = Arc::clone(&counter);
            let seed = b as u64;
            let mut obj =
                NetworkObjective::new(&net, loss, xb, tb, batch, Mode::Train, seed, counter);
            obj.gradient(theta, &mut grad);
            theta.iter_mut().zip(&grad).for_each(|(p, g)| *p -= 0.1 * g);
        }
    };
    // Evaluation uses the running statistics, which follow the training batches only after
    // some steps, so the first loss is measured after one epoch.
    epoch(&mut theta);
    let before = full_loss(&theta);
    for _ in 0..4 {
        epoch(&mut theta);
    }
    let after = full_loss(&theta);
    assert!(after < 0.7 * before, "loss {before} -> {after}");
}
