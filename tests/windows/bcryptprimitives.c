/*
 * Wine 8 (Debian 12) has no ProcessPrng in bcryptprimitives.dll, which
 * Rust's standard library (1.78 and later) imports at start on Windows, so
 * every Rust .exe dies at once under it. This stand-in exports ProcessPrng
 * over RtlGenRandom (advapi32's SystemFunction036), which Wine has. It is
 * for the Wine tests only: it never ships, and real Windows has its own.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
