//! A dense square matrix as a [`LinearOperator`], for tests and small problems.

use super::LinearOperator;
use crate::tensor::Scalar;
use crate::{Error, Result};

/// A dense `n × n` matrix stored row-major, with `Aᵀ` available.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseMatrix<T> {
    n: usize,
    data: Vec<T>,
    symmetric: bool,
}

impl<T: Scalar> DenseMatrix<T> {
    /// Creates an `n × n` matrix from `data` in row-major order.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] if `data.len() != n * n`.
    pub fn new(n: usize, data: Vec<T>) -> Result<Self> {
        if data.len() != n * n {
            return Err(Error::Shape(format!(
                "a {n} × {n} matrix needs {} entries, got {}",
                n * n,
                data.len()
            )));
        }
        let symmetric = is_symmetric(n, &data);
        Ok(DenseMatrix { n, data, symmetric })
    }

    /// Creates a matrix from its rows.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] if a row's length differs from the number of rows.
    pub fn from_rows(rows: &[Vec<T>]) -> Result<Self> {
        let n = rows.len();
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != n) {
            return Err(Error::Shape(format!(
                "row {i} of a square matrix with {n} rows has {} entries",
                row.len()
            )));
        }
        Self::new(n, rows.concat())
    }

    /// Creates the `n × n` matrix with entries `f(i, j)`.
    pub fn from_fn(n: usize, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let data: Vec<T> = (0..n * n).map(|k| f(k / n, k % n)).collect();
        let symmetric = is_symmetric(n, &data);
        DenseMatrix { n, data, symmetric }
    }

    /// Returns entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> T {
        self.data[i * self.n + j]
    }

    /// Returns the entries in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
}

/// Returns whether the row-major `n × n` matrix `data` equals its transpose exactly.
fn is_symmetric<T: Scalar>(n: usize, data: &[T]) -> bool {
    (0..n).all(|i| (0..i).all(|j| data[i * n + j] == data[j * n + i]))
}

impl<T: Scalar> LinearOperator<T> for DenseMatrix<T> {
    fn dim(&self) -> usize {
        self.n
    }

    fn apply(&mut self, x: &[T], y: &mut [T]) {
        for (yi, row) in y.iter_mut().zip(self.data.chunks_exact(self.n)) {
            *yi = row.iter().zip(x).map(|(&a, &b)| a * b).sum();
        }
    }

    fn apply_transpose(&mut self, x: &[T], y: &mut [T]) -> bool {
        y.fill(T::zero());
        for (&xi, row) in x.iter().zip(self.data.chunks_exact(self.n)) {
            for (yj, &a) in y.iter_mut().zip(row) {
                *yj += a * xi;
            }
        }
        true
    }

    fn is_symmetric(&self) -> bool {
        self.symmetric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_apply_and_transpose() {
        let mut a = DenseMatrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        let mut y = [0.0; 2];
        a.apply(&[1.0, -1.0], &mut y);
        assert_eq!(y, [-1.0, -1.0]);
        assert!(a.apply_transpose(&[1.0, -1.0], &mut y));
        assert_eq!(y, [-2.0, -2.0]);
        assert!(!a.is_symmetric());
    }

    #[test]
    fn dense_detects_symmetry() {
        let a = DenseMatrix::from_fn(3, |i, j| (i + j) as f64);
        assert!(a.is_symmetric());
        assert_eq!(a.get(1, 2), 3.0);
    }

    #[test]
    fn dense_rejects_wrong_shapes() {
        assert!(matches!(
            DenseMatrix::new(2, vec![1.0; 3]),
            Err(Error::Shape(_))
        ));
        let ragged = DenseMatrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]);
        assert!(matches!(ragged, Err(Error::Shape(_))));
    }
}
