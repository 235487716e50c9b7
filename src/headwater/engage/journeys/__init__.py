"""Journeys (Segment §15, §16): classic journeys that move profiles through steps on their
audience memberships, and event-triggered journeys that run one instance per entry event.

``model`` reads and checks a definition, ``store`` keeps journeys and their versions,
``runner`` moves profiles through the live versions in identity resolution's pass (a
``Follower`` of ``engage.stage.EngageStage``), ``payloads`` makes the messages a send step
sends, ``analytics`` counts what the step log recorded.
"""
