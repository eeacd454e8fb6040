"""The Hub side of the model card: its YAML metadata (`model-index` eval
results) and the method's description from the methods registry; the card's
text is built by `keras_sgn.reporting.model_card`."""

from keras_sgn import methods
from keras_sgn.hub.metadata import DEFAULT_NAMESPACE, attack_suite
from keras_sgn.reporting import model_card as card_text
from keras_sgn.reporting.model_card import DATASET_NAMES

CARD_TAGS = ("keras", "keras-sgn", "tensorflow", "adversarial-robustness",
             "adversarial-training", "self-gradient-networks", "image-classification")


def card_front_matter(metadata):
    """The card's YAML block: license, tags and the clean and robust accuracy
    as Hub `model-index` eval results."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics, tm = metadata["metrics"], metadata["threat_model"]
    dataset_type, dataset_name = DATASET_NAMES.get(
        metadata["dataset"], (metadata["dataset"], metadata["dataset"]))
    protocol = metrics["protocol"]
    attacks = ", ".join(a["name"] for a in protocol["attacks"])
    suite = metrics.get("suite") or attack_suite(protocol)
    attacks = f"{suite} suite ({attacks})" if suite else attacks
    cascade = "cascade, " if protocol.get("cascade") else ""
    images = f"{metrics['n_examples']} {metrics['split']} images"
    common = dict(task_type="image-classification", task_name="Image Classification",
                  dataset_type=dataset_type, dataset_name=dataset_name,
                  dataset_split=metrics["split"])
    results = [
        EvalResult(metric_type="accuracy", metric_name=f"Clean accuracy (%), {images}",
                   metric_value=round(100 * metrics["clean_accuracy"], 2), **common),
        EvalResult(metric_type="robust_accuracy",
                   metric_name=(f"Robust accuracy (%), {tm['norm']} eps={tm['epsilon_text']}, "
                                f"{attacks}, {cascade}worst case per example, {images}"),
                   metric_value=round(100 * metrics["robust_accuracy"], 2),
                   metric_args={"norm": tm["norm"], "epsilon": tm["epsilon"]}, **common),
    ]
    data = ModelCardData(
        library_name="keras", license="apache-2.0", model_name=metadata["name"],
        pipeline_tag="image-classification", tags=list(CARD_TAGS), eval_results=results)
    return data.to_yaml()


def method_description(method):
    """The registered method's one-sentence description (None for a method this
    version does not know, e.g. in metadata written by another version)."""
    try:
        return methods.registry.method_class(method).description
    except ValueError:
        return None


def model_card(metadata):
    """The `README.md` of the folder, from its `metadata.json` content."""
    method = metadata["recipe"]["train_config"].get("method")
    metrics = metadata["metrics"]
    metadata = {**metadata,
                "repo_id": metadata.get("repo_id") or f"{DEFAULT_NAMESPACE}/{metadata['name']}",
                # metadata written before the suite was recorded: name it from its attacks
                "metrics": {**metrics, "suite": metrics.get("suite")
                            or attack_suite(metrics["protocol"])}}
    return card_text.model_card(metadata, method_description=method_description(method),
                                front_matter=card_front_matter(metadata))
