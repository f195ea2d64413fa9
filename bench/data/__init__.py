"""Stage 1 of the flow: dataset readers in their publishers' layouts, label tasks and folds, the shared preprocessing,
encoders' input contracts, the prepared-array cache and the loaders that stream it."""
