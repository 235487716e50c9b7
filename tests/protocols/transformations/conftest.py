from tests.delivery.conftest import pipeline

__all__ = ["pipeline"]
