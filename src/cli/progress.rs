//! Progress display: a bar on a terminal, one line per epoch in logs.

use gradus::train::prepare::Setup;
use gradus::train::{EpochRecord, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws a progress bar over all steps of the run; hidden when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Progress { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn on_start(&mut self, epochs: usize, steps_per_epoch: usize, setup: &Setup) {
        self.bar.set_length((epochs * steps_per_epoch) as u64);
        self.bar.set_prefix(format!("1/{epochs}"));
        tracing::info!(
            train = setup.train.len,
            validation = setup.validation.len,
            test = setup.test.len,
            "data split"
        );
    }

    fn on_step(&mut self, _epoch: usize, _loss: f64) {
        self.bar.inc(1);
    }

    fn on_epoch(&mut self, record: &EpochRecord) {
        let total = self.bar.length().unwrap_or(0);
        self.bar.set_prefix(format!("{}", record.epoch + 1));
        let accuracy = record
            .validation
            .accuracy
            .map(|a| format!(" val acc {a:.4}"));
        self.bar.set_message(format!(
            "loss {:.4} val loss {:.4}{}",
            record.train_loss,
            record.validation.loss,
            accuracy.unwrap_or_default()
        ));
        if total > 0 && self.bar.position() > total {
            self.bar.set_length(self.bar.position());
        }
        tracing::info!(
            epoch = record.epoch,
            train_loss = record.train_loss,
            validation_loss = record.validation.loss,
            validation_accuracy = record.validation.accuracy,
            "epoch done"
        );
    }
}
