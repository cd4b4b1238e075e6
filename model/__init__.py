"""Text classifiers, evaluation and query strategies. Imports numpy/scikit-learn eagerly, Keras lazily
(only when a Keras family is built or loaded), so light consumers stay light."""
