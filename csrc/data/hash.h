/* hash.h: XXH64 content hashes of files, and the splitmix64 generator of the data code.
 *
 * XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0) identifies a file's bytes:
 * two files with the same hash are treated as the same image (duplicates). It is
 * not a cryptographic hash. splitmix64 (Steele, Lea, Flood 2014) drives every
 * seeded choice of the data code: splits and samplers. */
#ifndef TG_HASH_H
#define TG_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct tg_xxh64_state {
    uint64_t v[4];
    uint64_t total_length;
    unsigned char buffer[32];
    size_t buffered;
} tg_xxh64_state;

void tg_xxh64_init(tg_xxh64_state *state);
void tg_xxh64_update(tg_xxh64_state *state, const void *data, size_t length);
uint64_t tg_xxh64_digest(const tg_xxh64_state *state);

/* XXH64 of a buffer. */
uint64_t tg_xxh64(const void *data, size_t length);

/* XXH64 of a file's bytes and its size (TG_STATUS_IO naming the file when unreadable). */
tg_status tg_hash_file(const char *path, uint64_t *hash, int64_t *size_bytes);

/* splitmix64: advances *state and returns the next 64 random bits. */
static inline uint64_t tg_splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A generator state for (seed, stream): the stream (an epoch, a class) gets its own
 * sequence, so that changing one stream never shifts another. */
static inline uint64_t tg_rng_state(uint64_t seed, uint64_t stream)
{
    uint64_t s = seed;
    uint64_t a = tg_splitmix64_next(&s);
    uint64_t t = stream ^ 0x6a09e667f3bcc909ull;
    return a ^ tg_splitmix64_next(&t);
}

/* A uniform integer in [0, bound) (bound > 0), without modulo bias (Lemire's method). */
static inline uint64_t tg_rng_below(uint64_t *state, uint64_t bound)
{
    unsigned __int128 m = (unsigned __int128)tg_splitmix64_next(state) * bound;
    uint64_t low = (uint64_t)m;
    if (low < bound) {
        uint64_t threshold = (0 - bound) % bound;
        while (low < threshold) {
            m = (unsigned __int128)tg_splitmix64_next(state) * bound;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

#endif
