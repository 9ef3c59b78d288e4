"""The bench: its plan and runs (run) and Ray as its executor (ray_executor). Its folder's layout and reader are
uebench.training.bench_folder, a floor below the report that reads them."""
