/* augment_random.h: the counter-based generator of the data pipeline.
 *
 * Draw number i of a stream is splitmix64's output function applied to
 * key + (i + 1) * golden, where the key is hashed from (seed, epoch, index, stream).
 * A draw is therefore a pure function of those numbers and its position: there is
 * no global state, and a stream can be read at any offset (per-pixel noise uses the
 * pixel's index). This is not a cryptographic generator. */
#ifndef TG_AUGMENT_RANDOM_H
#define TG_AUGMENT_RANDOM_H

#include <math.h>
#include <stdint.h>

#define TG_RANDOM_GOLDEN 0x9e3779b97f4a7c15ull

static inline uint64_t tg_random_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The key of stream `stream` for one sample. */
static inline uint64_t tg_random_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream)
{
    uint64_t h = tg_random_mix(seed + TG_RANDOM_GOLDEN);
    h = tg_random_mix(h ^ (epoch + 2 * TG_RANDOM_GOLDEN));
    h = tg_random_mix(h ^ (index + 3 * TG_RANDOM_GOLDEN));
    return tg_random_mix(h ^ (stream + 4 * TG_RANDOM_GOLDEN));
}

/* Draw `counter` of stream `key`. */
static inline uint64_t tg_random_at(uint64_t key, uint64_t counter)
{
    return tg_random_mix(key + (counter + 1) * TG_RANDOM_GOLDEN);
}

typedef struct tg_random {
    uint64_t key;
    uint64_t counter;
} tg_random;

static inline uint64_t tg_random_next(tg_random *r) { return tg_random_at(r->key, r->counter++); }

/* Uniform in [0, 1) with 53 random bits. */
static inline double tg_random_unit(tg_random *r) { return (double)(tg_random_next(r) >> 11) * 0x1.0p-53; }

/* Uniform in [lo, hi). */
static inline double tg_random_uniform(tg_random *r, double lo, double hi)
{
    return lo + (hi - lo) * tg_random_unit(r);
}

/* Uniform integer in [0, n), n >= 1. NOTE: the modulo bias is below 2^-40 for n < 2^24. */
static inline int64_t tg_random_below(tg_random *r, int64_t n)
{
    return n <= 1 ? 0 : (int64_t)(tg_random_next(r) % (uint64_t)n);
}

/* Standard normal number `i` of stream `key` (Box-Muller on draws 2i and 2i+1). */
static inline float tg_random_normal_at(uint64_t key, uint64_t i)
{
    double u1 = ((double)(tg_random_at(key, 2 * i) >> 11) + 1.0) * 0x1.0p-53;   /* (0, 1] */
    double u2 = (double)(tg_random_at(key, 2 * i + 1) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
