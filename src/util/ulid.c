/* ULIDs: 128 bits as 26 characters of Crockford base32. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "wb_internal.h"

static const char alphabet[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Value of a base32 character (either case), or -1. I, L, O, U are not in
 * the alphabet: refused, not mapped, so a typo is caught. */
static int decode_char(unsigned char c)
{
    if (c >= 'a' && c <= 'z')
        c = (unsigned char)(c - 'a' + 'A');
    const char *p = memchr(alphabet, c, sizeof alphabet);
    return (p && c) ? (int)(p - alphabet) : -1;
}

WB_API wb_err wb_ulid_parse(const char *text, wb_ulid *out)
{
    if (!text || !out)
        return WB_ERR_INVALID_ARGUMENT;
    if (strnlen(text, WB_ULID_LEN + 1) != WB_ULID_LEN)
        return WB_ERR_INVALID_ARGUMENT;
    int v[WB_ULID_LEN];
    for (size_t i = 0; i < WB_ULID_LEN; i++) {
        v[i] = decode_char((unsigned char)text[i]);
        if (v[i] < 0)
            return WB_ERR_INVALID_ARGUMENT;
    }
    if (v[0] > 7) /* 26 * 5 = 130 bits: the top two must be zero */
        return WB_ERR_INVALID_ARGUMENT;
    /* Fold 5 bits at a time into a 130-bit big-endian accumulator. */
    wb_ulid u;
    memset(&u, 0, sizeof u);
    unsigned acc = 0;
    int bits = -2; /* skip the two leading zero bits */
    size_t o = 0;
    for (size_t i = 0; i < WB_ULID_LEN; i++) {
        acc = (acc << 5) | (unsigned)v[i];
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            u.bytes[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = u;
    return WB_OK;
}

WB_API void wb_ulid_format(const wb_ulid *ulid, char out[WB_ULID_STR_SIZE])
{
    /* 128 bits -> 26 groups of 5, the first group holding 3 bits. */
    unsigned acc = 0;
    int bits = 2; /* two leading zero bits */
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        acc = (acc << 8) | ulid->bytes[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
        acc &= (1u << bits) - 1;
    }
    out[WB_ULID_LEN] = '\0';
}

WB_API wb_err wb_ulid_canonical(const char *text, char out[WB_ULID_STR_SIZE])
{
    wb_ulid u;
    if (!out)
        return WB_ERR_INVALID_ARGUMENT;
    wb_err err = wb_ulid_parse(text, &u);
    if (err)
        return err;
    wb_ulid_format(&u, out);
    return WB_OK;
}

WB_API wb_err wb_ulid_new(wb_ulid *out)
{
    if (!out)
        return WB_ERR_INVALID_ARGUMENT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 5; i >= 0; i--) {
        out->bytes[i] = (uint8_t)(ms & 0xff);
        ms >>= 8;
    }
    size_t got = 0;
    while (got < 10) {
        ssize_t r = getrandom(out->bytes + 6 + got, 10 - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return WB_ERR_IO;
        }
        got += (size_t)r;
    }
    return WB_OK;
}
