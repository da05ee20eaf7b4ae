"""The Pooler assembled: options derived from Settings, the wiring of one instance or a group
member, the service's lifecycle and what an operator observes of it. The top layer: it may
import every other package; none imports it."""
