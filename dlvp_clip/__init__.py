__version__ = "0.2.0"

# The public API (see nbs/50_api.ipynb), imported on first use so that `import dlvp_clip` stays light:
# `dlvp_clip.create(...)` and `from dlvp_clip import create` both work.
__all__ = ['save_pretrained', 'load_pretrained', 'push_to_hub', 'list_methods', 'method_info', 'create', 'load', 'predict_images', 'overlay', 'train_model', 'train_config',
           'evaluate_model', 'model_for_test', 'methods_table', 'data_list', 'data_scan', 'open_data', 'run_demo', 'run_ablation',
           'reproduce_paper', 'compare_methods', 'default_device', 'TINY_CLIP', 'STAND_IN_NOTE']

def __getattr__(name):
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'dlvp_clip' has no attribute {name!r}")

def __dir__(): return sorted(list(globals()) + __all__)
