//! The CSV reader.
//!
//! Column numbers in messages are 0-based, like the `--target` index. Line numbers are
//! 1-based lines of the file, as an editor shows them.

use super::{open_decompressed, CsvOptions, Dataset, HeaderMode, TargetColumn, Targets, TaskKind};
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

/// The largest class count that numeric labels may imply. A larger id almost always means
/// that a real-valued column was read as labels, and it bounds the class-name list.
const MAX_CLASS_COUNT: usize = 1 << 16;

/// Reads a CSV file, gzip-compressed or plain.
pub(super) fn read_file(path: &Path, options: &CsvOptions) -> Result<Dataset> {
    let reader = open_decompressed(path)?;
    let origin = format!("CSV file {}", path.display());
    read(reader, &origin, dataset_name(path), options)
}

/// Returns the file name without `.gz` and without its last extension.
fn dataset_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let file = file.strip_suffix(".gz").unwrap_or(&file);
    let stem = match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    };
    stem.to_string()
}

/// Reads CSV text from `reader`. `origin` names the input in messages, for example
/// `CSV file data/x.csv`.
pub(super) fn read(
    reader: impl Read,
    origin: &str,
    name: String,
    options: &CsvOptions,
) -> Result<Dataset> {
    let mut records = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .trim(::csv::Trim::All)
        .from_reader(reader)
        .into_records();
    let first = match records.next() {
        Some(record) => record.map_err(|e| parse_error(origin, e))?,
        None => {
            return Err(Error::Data(format!(
                "{origin} is empty; it needs at least one row of data"
            )))
        }
    };

    let layout = Layout::new(&first, options, origin)?;
    let mut table = Table::new(&layout, options.task);
    if layout.header.is_none() {
        table.push(&first, origin)?;
    }
    for record in records {
        table.push(&record.map_err(|e| parse_error(origin, e))?, origin)?;
    }
    table.finish(name, origin)
}

fn parse_error(origin: &str, error: ::csv::Error) -> Error {
    Error::Data(format!(
        "failed to parse {origin}: {error}; check that it is complete UTF-8 CSV text"
    ))
}

/// Parses a feature or regression target, accepting only finite numbers.
fn parse_number(cell: &str) -> Option<f32> {
    cell.parse::<f32>().ok().filter(|x| x.is_finite())
}

/// The columns of a CSV file, decided from its first row.
struct Layout {
    /// Fields per row.
    width: usize,
    /// The target column, or `None` when every column is a feature.
    target: Option<usize>,
    /// The index of the column to drop: a target given for an autoencoder.
    dropped: Option<usize>,
    /// The column names when the first row is a header.
    header: Option<Vec<String>>,
    /// The feature columns in the order they are read, when `CsvOptions::feature_columns`
    /// selected them by name. `None` means every column that is not the target or dropped,
    /// in file order.
    selected: Option<Vec<usize>>,
    /// The line of the first row, for ragged-row messages.
    first_line: u64,
}

impl Layout {
    fn new(first: &::csv::StringRecord, options: &CsvOptions, origin: &str) -> Result<Layout> {
        let width = first.len();
        let mut header = match options.header {
            HeaderMode::Yes => Some(true),
            HeaderMode::No => Some(false),
            HeaderMode::Auto => None,
        };

        let target = match &options.target {
            Some(TargetColumn::Name(name)) => {
                if header == Some(false) {
                    return Err(Error::Data(format!(
                        "target column {name:?} needs a header row, but --header no was given \
                         for {origin}; give the target as a 0-based column index instead"
                    )));
                }
                header = Some(true);
                match first.iter().position(|cell| cell == name) {
                    Some(index) => Some(index),
                    None => {
                        let columns: Vec<&str> = first.iter().collect();
                        return Err(Error::Data(format!(
                            "target column {name:?} not found in {origin}; the header has the \
                             columns {}",
                            columns.join(", ")
                        )));
                    }
                }
            }
            Some(TargetColumn::Index(index)) => {
                if *index >= width {
                    return Err(Error::Data(format!(
                        "target column index {index} is out of range: {origin} has {width} \
                         columns, so valid indices are 0..={}",
                        width.saturating_sub(1)
                    )));
                }
                Some(*index)
            }
            None if options.task == TaskKind::Autoencoder => None,
            None => Some(width.saturating_sub(1)),
        };

        if options.task != TaskKind::Autoencoder && width < 2 {
            return Err(Error::Data(format!(
                "{origin} has only one column, so no feature is left beside the target; \
                 add feature columns or use --task autoencoder"
            )));
        }

        // A header is detected by a feature cell that is not a number; a non-numeric target
        // cell proves nothing, because labels may be class names.
        let header = header.unwrap_or_else(|| {
            first
                .iter()
                .enumerate()
                .any(|(col, cell)| Some(col) != target && cell.parse::<f64>().is_err())
        });
        let (target, dropped) = match options.task {
            TaskKind::Autoencoder => (None, target),
            _ => (target, None),
        };
        let selected = if header && !options.feature_columns.is_empty() {
            Some(select_columns(first, &options.feature_columns, origin)?)
        } else {
            None
        };
        Ok(Layout {
            width,
            target,
            dropped,
            header: header.then(|| first.iter().map(str::to_string).collect()),
            selected,
            first_line: first.position().map_or(1, |p| p.line()),
        })
    }

    /// Returns the feature columns in the order they are read.
    fn feature_order(&self) -> Vec<usize> {
        match &self.selected {
            Some(selected) => selected.clone(),
            None => (0..self.width)
                .filter(|&col| Some(col) != self.target && Some(col) != self.dropped)
                .collect(),
        }
    }

    /// Names a column in messages: its 0-based index, and its header name when there is one.
    fn column_label(&self, col: usize) -> String {
        match &self.header {
            Some(names) => format!("column {col} ({:?})", names[col]),
            None => format!("column {col}"),
        }
    }
}

/// Finds the header column of each name in `names`, in that order.
fn select_columns(
    header: &::csv::StringRecord,
    names: &[String],
    origin: &str,
) -> Result<Vec<usize>> {
    let mut selected = Vec::with_capacity(names.len());
    for name in names {
        let Some(col) = header.iter().position(|cell| cell == name) else {
            let columns: Vec<&str> = header.iter().collect();
            return Err(Error::Data(format!(
                "feature column {name:?} not found in {origin}; the header has the columns {}, \
                 so add the column {name:?}",
                columns.join(", ")
            )));
        };
        selected.push(col);
    }
    Ok(selected)
}

/// The target cells read so far.
enum TargetCells {
    /// Label text with the line of each cell, mapped to class ids once all rows are read.
    Labels { cells: Vec<String>, lines: Vec<u64> },
    /// Parsed regression targets.
    Values(Vec<f32>),
    /// No targets.
    None,
}

/// The rows read so far.
struct Table<'a> {
    layout: &'a Layout,
    /// The feature columns in the order they are read.
    order: Vec<usize>,
    features: Vec<f32>,
    targets: TargetCells,
    rows: usize,
}

impl<'a> Table<'a> {
    fn new(layout: &'a Layout, task: TaskKind) -> Table<'a> {
        let targets = match (task, layout.target) {
            (TaskKind::Classify, Some(_)) => TargetCells::Labels {
                cells: Vec::new(),
                lines: Vec::new(),
            },
            (TaskKind::Regress, Some(_)) => TargetCells::Values(Vec::new()),
            _ => TargetCells::None,
        };
        Table {
            layout,
            order: layout.feature_order(),
            features: Vec::new(),
            targets,
            rows: 0,
        }
    }

    fn push(&mut self, record: &::csv::StringRecord, origin: &str) -> Result<()> {
        let layout = self.layout;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != layout.width {
            return Err(Error::Data(format!(
                "{origin}, line {line}: found {} fields, but line {} has {}; every row needs \
                 the same number of fields",
                record.len(),
                layout.first_line,
                layout.width
            )));
        }

        for &col in &self.order {
            let cell = &record[col];
            let value = parse_number(cell).ok_or_else(|| {
                let column = layout.column_label(col);
                Error::Data(if cell.is_empty() {
                    format!(
                        "{origin}, line {line}, {column}: the cell is empty; fill in the \
                         missing value or drop the row"
                    )
                } else {
                    format!(
                        "{origin}, line {line}, {column}: {cell:?} is not a finite number; \
                         feature columns must be numeric, so convert or drop this column"
                    )
                })
            })?;
            self.features.push(value);
        }
        if let Some(col) = layout.target {
            self.push_target(&record[col], line, col, origin)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn push_target(&mut self, cell: &str, line: u64, col: usize, origin: &str) -> Result<()> {
        if cell.is_empty() {
            return Err(Error::Data(format!(
                "{origin}, line {line}, {}: the target cell is empty; every row needs a \
                 target, so fill it in or drop the row",
                self.layout.column_label(col)
            )));
        }
        match &mut self.targets {
            TargetCells::Labels { cells, lines } => {
                cells.push(cell.to_string());
                lines.push(line);
            }
            TargetCells::Values(values) => {
                let value = parse_number(cell).ok_or_else(|| {
                    Error::Data(format!(
                        "{origin}, line {line}, {}: target {cell:?} is not a finite number; \
                         --task regress needs numeric targets, so use --task classify for \
                         class names",
                        self.layout.column_label(col)
                    ))
                })?;
                values.push(value);
            }
            TargetCells::None => {}
        }
        Ok(())
    }

    fn finish(self, name: String, origin: &str) -> Result<Dataset> {
        let layout = self.layout;
        if self.rows == 0 {
            return Err(Error::Data(format!(
                "{origin} has a header but no data rows; add at least one row of data"
            )));
        }
        let target_name = |col: usize| match &layout.header {
            Some(names) => names[col].clone(),
            None => format!("column {col}"),
        };
        let targets = match (self.targets, layout.target) {
            (TargetCells::Labels { cells, lines }, Some(col)) => {
                class_targets(&cells, &lines, &layout.column_label(col), origin)?
            }
            (TargetCells::Values(values), Some(col)) => Targets::Values {
                values,
                dim: 1,
                names: vec![target_name(col)],
            },
            _ => Targets::None,
        };
        let feature_names = match &layout.header {
            Some(names) => layout
                .feature_order()
                .into_iter()
                .map(|col| names[col].clone())
                .collect(),
            None => Vec::new(),
        };
        Ok(Dataset {
            name,
            sample_dims: vec![self.features.len() / self.rows],
            features: self.features,
            feature_names,
            targets,
        })
    }
}

/// Maps label cells to class ids.
///
/// When every label is a number, the numbers are the class ids and must be non-negative
/// integers. The class count is then the largest id plus one. Otherwise the distinct label
/// texts become the classes in sorted order.
fn class_targets(cells: &[String], lines: &[u64], column: &str, origin: &str) -> Result<Targets> {
    let numbers: Option<Vec<f64>> = cells.iter().map(|c| c.parse::<f64>().ok()).collect();
    let Some(numbers) = numbers else {
        let names: Vec<String> = cells
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let ids: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(id, name)| (name.as_str(), id))
            .collect();
        let labels = cells
            .iter()
            .map(|c| ids.get(c.as_str()).copied().unwrap_or(0))
            .collect();
        return Ok(Targets::Classes { labels, names });
    };

    let mut labels = Vec::with_capacity(numbers.len());
    for (i, &x) in numbers.iter().enumerate() {
        let is_class_id = x >= 0.0 && x.fract() == 0.0;
        if !is_class_id || x >= MAX_CLASS_COUNT as f64 {
            let problem = if is_class_id {
                format!(
                    "is above the largest supported class id {}",
                    MAX_CLASS_COUNT - 1
                )
            } else {
                "is not a class id (a non-negative integer)".to_string()
            };
            return Err(Error::Data(format!(
                "{origin}, line {}, {column}: label {:?} {problem}; use --task regress for \
                 real-valued targets, or write the classes as names or as 0, 1, 2, ...",
                lines[i], cells[i]
            )));
        }
        labels.push(x as usize);
    }
    let class_count = labels.iter().max().map_or(0, |&max| max + 1);
    let names = (0..class_count).map(|id| id.to_string()).collect();
    Ok(Targets::Classes { labels, names })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes `text` to a file named `name` in a new temporary folder.
    fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write temporary file");
        (dir, path)
    }

    fn read_text(text: &str, options: &CsvOptions) -> Result<Dataset> {
        read(text.as_bytes(), "CSV file test.csv", "test".into(), options)
    }

    fn error_text(text: &str, options: &CsvOptions) -> String {
        match read_text(text, options) {
            Ok(data) => panic!("expected an error, read {} rows", data.len()),
            Err(e) => e.to_string(),
        }
    }

    fn with_target(target: TargetColumn) -> CsvOptions {
        CsvOptions {
            target: Some(target),
            ..CsvOptions::default()
        }
    }

    #[test]
    fn header_and_named_target() {
        let text = "height,label,weight\n1.5,1,60\n1.7,0,72.5\n1.6,2,65\n";
        let data =
            read_text(text, &with_target(TargetColumn::Name("label".into()))).expect("valid CSV");
        assert_eq!(data.len(), 3);
        assert_eq!(data.sample_dims, vec![2]);
        assert_eq!(data.feature_names, vec!["height", "weight"]);
        assert_eq!(data.features, vec![1.5, 60.0, 1.7, 72.5, 1.6, 65.0]);
        assert_eq!(data.labels(), Some(&[1, 0, 2][..]));
        assert_eq!(data.class_count(), Some(3));
    }

    #[test]
    fn header_detected_without_target() {
        let data = read_text("a,b,y\n1,2,0\n3,4,1\n", &CsvOptions::default()).expect("valid CSV");
        assert_eq!(data.feature_names, vec!["a", "b"]);
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn no_header_uses_last_column() {
        let data = read_text("1,2,0\n3,4,3\n", &CsvOptions::default()).expect("valid CSV");
        assert!(data.feature_names.is_empty());
        assert_eq!(data.features, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(data.labels(), Some(&[0, 3][..]));
        assert_eq!(data.class_count(), Some(4));
        let names = match &data.targets {
            Targets::Classes { names, .. } => names.clone(),
            other => panic!("expected classes, got {other:?}"),
        };
        assert_eq!(names, vec!["0", "1", "2", "3"]);
    }

    #[test]
    fn forced_no_header_with_index_target() {
        let options = CsvOptions {
            header: HeaderMode::No,
            target: Some(TargetColumn::Index(0)),
            ..CsvOptions::default()
        };
        let data = read_text("2,0.5,0.25\n1.0,1,1\n", &options).expect("valid CSV");
        assert_eq!(data.labels(), Some(&[2, 1][..]));
        assert_eq!(data.features, vec![0.5, 0.25, 1.0, 1.0]);
    }

    #[test]
    fn string_labels_sorted() {
        let text = "x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n";
        let data = read_text(text, &CsvOptions::default()).expect("valid CSV");
        assert_eq!(data.labels(), Some(&[2, 0, 1, 0][..]));
        let names = match &data.targets {
            Targets::Classes { names, .. } => names.clone(),
            other => panic!("expected classes, got {other:?}"),
        };
        assert_eq!(names, vec!["setosa", "versicolor", "virginica"]);
    }

    #[test]
    fn string_labels_without_header() {
        let data = read_text("1,cat\n2,dog\n", &CsvOptions::default()).expect("valid CSV");
        assert!(data.feature_names.is_empty());
        assert_eq!(data.labels(), Some(&[0, 1][..]));
    }

    #[test]
    fn regress_reads_values() {
        let options = CsvOptions {
            task: TaskKind::Regress,
            ..CsvOptions::default()
        };
        let data = read_text("a,price\n1,2.5\n2,-3.25\n", &options).expect("valid CSV");
        let expected = Targets::Values {
            values: vec![2.5, -3.25],
            dim: 1,
            names: vec!["price".into()],
        };
        assert_eq!(data.targets, expected);
    }

    #[test]
    fn autoencoder_keeps_or_drops_columns() {
        let mut options = CsvOptions {
            task: TaskKind::Autoencoder,
            ..CsvOptions::default()
        };
        let data = read_text("1,2,3\n4,5,6\n", &options).expect("valid CSV");
        assert_eq!(data.targets, Targets::None);
        assert_eq!(data.feature_count(), 3);

        options.target = Some(TargetColumn::Index(1));
        let data = read_text("1,2,3\n4,5,6\n", &options).expect("valid CSV");
        assert_eq!(data.targets, Targets::None);
        assert_eq!(data.features, vec![1.0, 3.0, 4.0, 6.0]);
    }

    #[test]
    fn other_delimiter_and_quotes() {
        let options = CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        };
        let data = read_text("\"a\";\"b\"\n 1.5 ;\"x\"\n", &options).expect("valid CSV");
        assert_eq!(data.features, vec![1.5]);
        assert_eq!(data.feature_names, vec!["a"]);
    }

    #[test]
    fn gzip_file_read_transparently() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("table.csv.gz");
        let file = std::fs::File::create(&path).expect("create file");
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        encoder
            .write_all(b"a,b,y\n1,2,0\n3,4,1\n")
            .expect("write gzip");
        encoder.finish().expect("finish gzip");
        let data = read_file(&path, &CsvOptions::default()).expect("valid gzip CSV");
        assert_eq!(data.name, "table");
        assert_eq!(data.features, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn missing_file_names_path() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("absent.csv");
        let message = read_file(&path, &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("absent.csv"), "{message}");
    }

    #[test]
    fn ragged_row_names_line_and_counts() {
        let (_dir, path) = write_temp("ragged.csv", "a,b,y\n1,2,0\n3,1\n");
        let message = read_file(&path, &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("ragged.csv"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("found 2 fields"), "{message}");
        assert!(message.contains("line 1 has 3"), "{message}");
    }

    #[test]
    fn non_numeric_feature_names_cell() {
        let (_dir, path) = write_temp("bad.csv", "a,b,y\n1,2,0\n3,abc,1\n");
        let message = read_file(&path, &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("bad.csv"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("column 1 (\"b\")"), "{message}");
        assert!(message.contains("\"abc\""), "{message}");
    }

    #[test]
    fn empty_and_non_finite_features_rejected() {
        let message = error_text("a,y\n,0\n", &CsvOptions::default());
        assert!(
            message.contains("line 2, column 0 (\"a\"): the cell is empty"),
            "{message}"
        );
        let message = error_text("a,y\n1,0\nNaN,1\n", &CsvOptions::default());
        assert!(
            message.contains("\"NaN\" is not a finite number"),
            "{message}"
        );
    }

    #[test]
    fn missing_target_lists_columns() {
        let options = with_target(TargetColumn::Name("class".into()));
        let message = error_text("a,b,label\n1,2,0\n", &options);
        assert!(message.contains("\"class\" not found"), "{message}");
        assert!(message.contains("a, b, label"), "{message}");
    }

    #[test]
    fn target_index_out_of_range() {
        let message = error_text("1,2,0\n", &with_target(TargetColumn::Index(5)));
        assert!(message.contains("index 5"), "{message}");
        assert!(message.contains("0..=2"), "{message}");
    }

    #[test]
    fn named_target_needs_header() {
        let options = CsvOptions {
            header: HeaderMode::No,
            target: Some(TargetColumn::Name("y".into())),
            ..CsvOptions::default()
        };
        let message = error_text("1,2\n", &options);
        assert!(message.contains("\"y\" needs a header"), "{message}");
    }

    #[test]
    fn bad_numeric_labels_rejected() {
        let message = error_text("a,y\n1,0\n2,-1\n", &CsvOptions::default());
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("label \"-1\""), "{message}");
        let message = error_text("a,y\n1,0\n2,1\n3,2.5\n", &CsvOptions::default());
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("label \"2.5\""), "{message}");
        let message = error_text("a,y\n1,100000\n", &CsvOptions::default());
        assert!(message.contains("label \"100000\""), "{message}");
        assert!(message.contains("--task regress"), "{message}");
    }

    #[test]
    fn empty_target_rejected() {
        let message = error_text("a,y\n1,0\n2,\n", &CsvOptions::default());
        assert!(message.contains("line 3, column 1 (\"y\")"), "{message}");
        assert!(message.contains("target cell is empty"), "{message}");
    }

    #[test]
    fn regress_rejects_text_target() {
        let options = CsvOptions {
            task: TaskKind::Regress,
            ..CsvOptions::default()
        };
        let message = error_text("a,y\n1,2\n2,high\n", &options);
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("target \"high\""), "{message}");
    }

    #[test]
    fn empty_data_rejected() {
        let (_dir, path) = write_temp("empty.csv", "");
        let message = read_file(&path, &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("empty.csv is empty"), "{message}");
        let message = error_text("a,b,y\n", &CsvOptions::default());
        assert!(message.contains("no data rows"), "{message}");
    }

    #[test]
    fn single_column_needs_autoencoder() {
        let message = error_text("1\n2\n", &CsvOptions::default());
        assert!(message.contains("only one column"), "{message}");
    }

    #[test]
    fn name_strips_extensions() {
        assert_eq!(dataset_name(Path::new("dir/houses.csv.gz")), "houses");
        assert_eq!(dataset_name(Path::new("houses.tsv")), "houses");
        assert_eq!(dataset_name(Path::new(".hidden")), ".hidden");
    }

    #[test]
    fn feature_columns_select_by_name() {
        let options = CsvOptions {
            task: TaskKind::Autoencoder,
            feature_columns: vec!["b".into(), "a".into()],
            ..CsvOptions::default()
        };
        let data = read_text("a,label,b\n1,cat,2\n3,dog,4\n", &options).expect("valid CSV");
        assert_eq!(data.features, vec![2.0, 1.0, 4.0, 3.0]);
        assert_eq!(data.feature_names, vec!["b", "a"]);
    }

    #[test]
    fn feature_columns_missing_name() {
        let options = CsvOptions {
            task: TaskKind::Autoencoder,
            feature_columns: vec!["a".into(), "c".into()],
            ..CsvOptions::default()
        };
        let message = error_text("a,b\n1,2\n", &options);
        assert!(
            message.contains("feature column \"c\" not found"),
            "{message}"
        );
    }
}
