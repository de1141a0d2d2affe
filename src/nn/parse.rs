//! The compact model description of the command line, such as
//! `conv:32x3x3,relu,maxpool:2,flatten,dense:128,relu`.

use super::{Activation, LayerSpec};
use crate::{Error, Result};

const CONV_FORM: &str = "conv:FILTERSxKHxKW[:sSTRIDE][:pPADDING], for example conv:32x3x3:p1";
const POOL_FORM: &str = "SIZE[:sSTRIDE] after the pooling name, for example maxpool:2 or \
                         avgpool:3:s2";
const LAYER_NAMES: &str = "conv, maxpool, avgpool, dense, dropout, batchnorm, flatten or an \
                           activation (relu, leaky-relu, tanh, sigmoid, gelu, softplus, \
                           identity)";

/// Parses a model description: layers separated by commas, with spaces around a layer
/// ignored. The output layer is not part of the description; the caller appends it.
///
/// ```text
/// conv:FILTERSxKHxKW[:sSTRIDE][:pPADDING]   2-d convolution; conv:FILTERSxK is a K×K kernel;
///                                           stride 1 and padding 0 unless given
/// maxpool:SIZE[:sSTRIDE]                    max pooling; the stride is SIZE unless given
/// avgpool:SIZE[:sSTRIDE]                    average pooling, likewise
/// dense:UNITS                               a dense layer
/// dropout:RATE                              dropout, 0 <= RATE < 1
/// batchnorm                                 batch normalisation
/// flatten                                   reshape each sample to one dimension
/// relu, tanh, ...                           an activation, named as Activation's FromStr
/// ```
///
/// Every count is a positive integer except the padding, which may be 0. An empty or blank
/// description has no layers.
///
/// # Errors
///
/// [`Error::InvalidSetting`] naming the first invalid layer, its 1-based position in the
/// list, the 1-based character where it starts, and the expected form.
///
/// # Example
///
/// ```
/// use gradus::nn::{parse_model, LayerSpec};
///
/// let specs = parse_model("conv:8x3x3:p1, relu, maxpool:2, flatten").unwrap();
/// assert_eq!(
///     specs[0],
///     LayerSpec::Conv2d { filters: 8, kernel: [3, 3], stride: 1, padding: 1 }
/// );
/// assert_eq!(specs.len(), 4);
/// ```
pub fn parse_model(text: &str) -> Result<Vec<LayerSpec>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut specs = Vec::new();
    let mut offset = 0;
    for (index, raw) in text.split(',').enumerate() {
        let start = offset + (raw.len() - raw.trim_start().len());
        offset += raw.len() + 1;
        let token = raw.trim();
        let spec = parse_layer(token).map_err(|expected| {
            let column = text[..start].chars().count() + 1;
            Error::setting(
                "model description",
                format!("layer {} {token:?} at character {column}", index + 1),
                &expected,
            )
        })?;
        specs.push(spec);
    }
    Ok(specs)
}

/// Parses one layer; the error is the expected form.
fn parse_layer(token: &str) -> std::result::Result<LayerSpec, String> {
    if token.is_empty() {
        return Err(format!(
            "expected a layer between the commas: {LAYER_NAMES}"
        ));
    }
    let mut parts = token.split(':');
    let name = parts.next().unwrap_or_default();
    let args: Vec<&str> = parts.collect();
    match name {
        "conv" => parse_conv(&args),
        "maxpool" => {
            let (size, stride) = parse_pool(&args)?;
            Ok(LayerSpec::MaxPool2d { size, stride })
        }
        "avgpool" => {
            let (size, stride) = parse_pool(&args)?;
            Ok(LayerSpec::AvgPool2d { size, stride })
        }
        "dense" => match args[..] {
            [units] => Ok(LayerSpec::Dense {
                units: positive(units).ok_or("expected dense:UNITS with UNITS at least 1")?,
            }),
            _ => Err("expected dense:UNITS, for example dense:128".into()),
        },
        "dropout" => match args[..] {
            [rate] => match rate.parse::<f64>() {
                Ok(rate) if (0.0..1.0).contains(&rate) => Ok(LayerSpec::Dropout { rate }),
                _ => Err("expected dropout:RATE with 0 <= RATE < 1".into()),
            },
            _ => Err("expected dropout:RATE, for example dropout:0.25".into()),
        },
        "batchnorm" | "flatten" if !args.is_empty() => Err(format!("expected {name} alone")),
        "batchnorm" => Ok(LayerSpec::BatchNorm),
        "flatten" => Ok(LayerSpec::Flatten),
        _ => match name.parse::<Activation>() {
            Ok(_) if !args.is_empty() => Err(format!("expected the activation {name} alone")),
            Ok(function) => Ok(LayerSpec::Activation { function }),
            Err(_) => Err(format!("expected {LAYER_NAMES}")),
        },
    }
}

fn parse_conv(args: &[&str]) -> std::result::Result<LayerSpec, String> {
    let Some((dims, options)) = args.split_first() else {
        return Err(format!("expected {CONV_FORM}"));
    };
    let dims: Option<Vec<usize>> = dims.split('x').map(positive).collect();
    let (filters, kernel) = match dims.as_deref() {
        Some(&[filters, k]) => (filters, [k, k]),
        Some(&[filters, kh, kw]) => (filters, [kh, kw]),
        _ => return Err(format!("expected {CONV_FORM}, with positive integers")),
    };
    let (mut stride, mut padding) = (None, None);
    for option in options {
        let (slot, value) = match option.split_at_checked(1) {
            Some(("s", value)) => (&mut stride, positive(value)),
            Some(("p", value)) => (&mut padding, value.parse::<usize>().ok()),
            _ => return Err(format!("expected {CONV_FORM}")),
        };
        match (slot.is_some(), value) {
            (false, Some(value)) => *slot = Some(value),
            (true, _) => return Err(format!("expected each option once in {CONV_FORM}")),
            (false, None) => {
                return Err(format!(
                    "expected a stride of at least 1 and a padding of at least 0 in {CONV_FORM}"
                ))
            }
        }
    }
    Ok(LayerSpec::Conv2d {
        filters,
        kernel,
        stride: stride.unwrap_or(1),
        padding: padding.unwrap_or(0),
    })
}

fn parse_pool(args: &[&str]) -> std::result::Result<(usize, Option<usize>), String> {
    let expected = || format!("expected {POOL_FORM}, with positive integers");
    match args {
        [size] => Ok((positive(size).ok_or_else(expected)?, None)),
        [size, stride] => {
            let stride = stride.strip_prefix('s').and_then(positive);
            Ok((
                positive(size).ok_or_else(expected)?,
                Some(stride.ok_or_else(expected)?),
            ))
        }
        _ => Err(expected()),
    }
}

/// Parses an integer of at least 1.
fn positive(text: &str) -> Option<usize> {
    text.parse::<usize>().ok().filter(|&n| n > 0)
}
