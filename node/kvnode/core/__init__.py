"""Pure kernel of ringkv: values, hashing, placement, planning, digests and domain errors.

Nothing here does I/O, reads a clock or draws randomness implicitly; the node and the operator
both import it, so the key→partition mapping and placement can never disagree between them.
"""
