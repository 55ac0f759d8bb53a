"""Training data: HR/LR pairs made as the evaluation makes them, held in memory and cropped in batches."""
