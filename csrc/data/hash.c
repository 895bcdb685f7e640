/* hash.c: XXH64 (the reference algorithm, little-endian reads), one file at a time. */
#include "hash.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define PRIME1 0x9E3779B185EBCA87ull
#define PRIME2 0xC2B2AE3D27D4EB4Full
#define PRIME3 0x165667B19E3779F9ull
#define PRIME4 0x85EBCA77C2B2AE63ull
#define PRIME5 0x27D4EB2F165667C5ull

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* NOTE: x86-64 is little-endian, as XXH64 specifies */
}

static uint32_t read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t round64(uint64_t acc, uint64_t input)
{
    acc += input * PRIME2;
    acc = rotl(acc, 31);
    return acc * PRIME1;
}

static uint64_t merge_round(uint64_t acc, uint64_t v)
{
    acc ^= round64(0, v);
    return acc * PRIME1 + PRIME4;
}

void tg_xxh64_init(tg_xxh64_state *state)
{
    memset(state, 0, sizeof *state);
    state->v[0] = PRIME1 + PRIME2;
    state->v[1] = PRIME2;
    state->v[2] = 0;
    state->v[3] = 0 - PRIME1;
}

static void consume_stripe(tg_xxh64_state *state, const unsigned char *p)
{
    for (int i = 0; i < 4; i++) state->v[i] = round64(state->v[i], read64(p + 8 * i));
}

void tg_xxh64_update(tg_xxh64_state *state, const void *data, size_t length)
{
    const unsigned char *p = data;
    state->total_length += length;
    if (state->buffered + length < 32) {
        memcpy(state->buffer + state->buffered, p, length);
        state->buffered += length;
        return;
    }
    if (state->buffered) {
        size_t fill = 32 - state->buffered;
        memcpy(state->buffer + state->buffered, p, fill);
        consume_stripe(state, state->buffer);
        p += fill;
        length -= fill;
        state->buffered = 0;
    }
    while (length >= 32) {
        consume_stripe(state, p);
        p += 32;
        length -= 32;
    }
    memcpy(state->buffer, p, length);
    state->buffered = length;
}

uint64_t tg_xxh64_digest(const tg_xxh64_state *state)
{
    uint64_t h;
    if (state->total_length >= 32) {
        h = rotl(state->v[0], 1) + rotl(state->v[1], 7) + rotl(state->v[2], 12) + rotl(state->v[3], 18);
        for (int i = 0; i < 4; i++) h = merge_round(h, state->v[i]);
    } else {
        h = state->v[2] + PRIME5;
    }
    h += state->total_length;
    const unsigned char *p = state->buffer;
    size_t n = state->buffered;
    while (n >= 8) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * PRIME1 + PRIME4;
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        h ^= (uint64_t)read32(p) * PRIME1;
        h = rotl(h, 23) * PRIME2 + PRIME3;
        p += 4;
        n -= 4;
    }
    while (n > 0) {
        h ^= (*p) * PRIME5;
        h = rotl(h, 11) * PRIME1;
        p++;
        n--;
    }
    h ^= h >> 33;
    h *= PRIME2;
    h ^= h >> 29;
    h *= PRIME3;
    h ^= h >> 32;
    return h;
}

uint64_t tg_xxh64(const void *data, size_t length)
{
    tg_xxh64_state state;
    tg_xxh64_init(&state);
    tg_xxh64_update(&state, data, length);
    return tg_xxh64_digest(&state);
}

tg_status tg_hash_file(const char *path, uint64_t *hash, int64_t *size_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return tg_error(TG_STATUS_IO, "%s: cannot open for hashing (%s)", path, strerror(errno));
    tg_xxh64_state state;
    tg_xxh64_init(&state);
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) tg_xxh64_update(&state, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) return tg_error(TG_STATUS_IO, "%s: read error while hashing", path);
    *hash = tg_xxh64_digest(&state);
    *size_bytes = (int64_t)state.total_length;
    return TG_STATUS_OK;
}
