/* OpenSSL's AES, reached through function pointers handed over at run time, not linked.
 *
 * Why: linking libcrypto needs its development files on the building machine and ties a wheel
 * to one OpenSSL build, and calling dlopen from here would raise the wheel's glibc floor to 2.34.
 * Every CPython that has an ssl module already carries a libcrypto (1.1 or 3), whose EVP cipher
 * calls used here have had the same signatures since 1.1.0: the Python side
 * (ztnode.crypto._cext) opens that library, looks up each symbol zt_crypto_symbol names, and
 * hands the addresses to zt_crypto_bind. Until a bind succeeds, zt_aes_new returns NULL and
 * cipher 3 runs in Python (the `cryptography` package), while ciphers 0 and 1 stay in C.
 *
 * The table below is written once, at import, under Python's import lock, before any context
 * exists; afterwards it is only read. */
#include "zt_internal.h"

#include <string.h>

zt_ossl_api zt_ossl;

typedef struct {
    const char *name;
    size_t offset;
} zt_ossl_sym;

#define SYM(field, name) { name, offsetof(zt_ossl_api, field) }

static const zt_ossl_sym zt_ossl_syms[] = {
    SYM(ctx_new, "EVP_CIPHER_CTX_new"),
    SYM(ctx_free, "EVP_CIPHER_CTX_free"),
    SYM(encrypt_init, "EVP_EncryptInit_ex"),
    SYM(encrypt_update, "EVP_EncryptUpdate"),
    SYM(encrypt_final, "EVP_EncryptFinal_ex"),
    SYM(decrypt_init, "EVP_DecryptInit_ex"),
    SYM(decrypt_update, "EVP_DecryptUpdate"),
    SYM(set_padding, "EVP_CIPHER_CTX_set_padding"),
    SYM(ctrl, "EVP_CIPHER_CTX_ctrl"),
    SYM(aes_256_gcm, "EVP_aes_256_gcm"),
    SYM(aes_256_ecb, "EVP_aes_256_ecb"),
    SYM(aes_256_ctr, "EVP_aes_256_ctr"),
};

#define ZT_OSSL_NSYMS (sizeof zt_ossl_syms / sizeof zt_ossl_syms[0])

const char *zt_crypto_symbol(size_t i)
{
    return i < ZT_OSSL_NSYMS ? zt_ossl_syms[i].name : NULL;
}

/* `fns[i]` is the address of zt_crypto_symbol(i) in one libcrypto, which the caller keeps loaded
 * for the life of the process (contexts made from it may outlive any caller). */
int zt_crypto_bind(void *const *fns, size_t n)
{
    zt_ossl_api api;
    size_t i;
    if (zt_ossl.bound)
        return ZT_CRYPTO_BOUND;
    if (fns == NULL || n != ZT_OSSL_NSYMS)
        return ZT_CRYPTO_ESYMBOL;
    memset(&api, 0, sizeof api);
    for (i = 0; i < n; i++) {
        if (fns[i] == NULL)
            return ZT_CRYPTO_ESYMBOL;
        /* An object pointer from the symbol lookup; POSIX guarantees it converts to a function
         * pointer, and every field of the table is one. */
        memcpy((char *)&api + zt_ossl_syms[i].offset, &fns[i], sizeof fns[i]);
    }
    api.bound = 1;
    zt_ossl = api;
    return ZT_CRYPTO_BOUND;
}

int zt_crypto_bound(void)
{
    return zt_ossl.bound;
}
