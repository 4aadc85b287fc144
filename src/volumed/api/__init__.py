"""HTTP only: routing, bodies, the envelope, authentication, error mapping."""
