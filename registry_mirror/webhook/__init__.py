"""The model-hub pod-injection webhook: a mutating admission webhook that points a pod's Hugging Face
and ModelScope clients at the mirror on its node (`patch` decides, `app` speaks AdmissionReview)."""
