/* The memory-hard identity hash's sequential part (ztnode/crypto/idhash.py explains the hash).
 *
 * Why C: every identity a node meets for the first time is validated with this hash, and the
 * mixing step is 131 072 dependent random accesses into 2 MiB that Python runs as an
 * interpreted loop (~40-130 ms a hash, most of it there); a root or a node meeting many peers
 * pays that per newcomer, with the interpreter held. Here it costs a few milliseconds and cffi
 * releases the GIL for it.
 *
 * The caller supplies the SHA-512 digest of the public key and the whole Salsa20/20 keystream
 * (10 MiB; Python makes it with the fastest Salsa20 it has, libsodium's where present). The
 * keystream buffer is consumed as the work memory: its first 2 MiB become the generated table. */
#include "zt_internal.h"

#include <string.h>

#define ID_GEN_MEMORY 2097152u           /* bytes of the generated table */
#define ID_CELLS (ID_GEN_MEMORY / 8u)    /* its 64-bit cells */
#define ID_MIX_STEPS (ID_CELLS / 2u)     /* one step per pair of cells */
#define ID_KEYSTREAM ((size_t)ID_GEN_MEMORY + 64u * ID_MIX_STEPS) /* 10 MiB */

int zt_identity_mix(unsigned char digest[64], unsigned char *ks, size_t ks_len)
{
    unsigned char *gen = ks;
    const unsigned char *stream = ks + ID_GEN_MEMORY;
    unsigned char cell[8];
    uint64_t a, b, w;
    size_t i, j;

    if (ks_len != ID_KEYSTREAM)
        return ZT_ACCEL_ELENGTH;
    /* The table: each 64-byte block is the keystream block XOR the table's previous block (the
     * reference chains Salsa20 over the table so it cannot be computed out of order). */
    for (i = 64; i < ID_GEN_MEMORY; i += 8) {
        memcpy(&a, gen + i, 8);
        memcpy(&b, gen + i - 64, 8);
        a ^= b;
        memcpy(gen + i, &a, 8);
    }
    /* Each step reads its two cells as big-endian numbers (after every earlier swap), swaps a
     * table cell with a digest word, then XORs the next keystream block into the digest. */
    for (j = 0; j < ID_MIX_STEPS; j++) {
        size_t w_at = (size_t)(zt_be64(gen + 16 * j) & 7u) * 8;
        size_t c_at = (size_t)(zt_be64(gen + 16 * j + 8) & (ID_CELLS - 1u)) * 8;
        memcpy(cell, gen + c_at, 8);
        memcpy(gen + c_at, digest + w_at, 8);
        memcpy(digest + w_at, cell, 8);
        for (i = 0; i < 64; i += 8) {
            memcpy(&a, digest + i, 8);
            memcpy(&w, stream + 64 * j + i, 8);
            a ^= w;
            memcpy(digest + i, &a, 8);
        }
    }
    zt_wipe(cell, sizeof cell);
    return ZT_ACCEL_OK;
}
