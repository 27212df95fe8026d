import {createHash, randomBytes, timingSafeEqual} from 'node:crypto'

/**
 * A join token, `ID.SECRET` as kubeadm's bootstrap tokens are: the ID is public (it names the token in lists,
 * revocations and logs), the SECRET is what proves the holder was invited. Both are lowercase base32 (a–z,
 * 2–7: no two characters that look alike, and 32 divides 256, so every character is exactly 5 random bits):
 * 6 characters of ID, 26 of SECRET, 130 bits of secret. kubeadm's `[a-z0-9]{16}` secret has 82.
 */
export interface JoinToken {
  id: string
  secret: string
  /** `ID.SECRET`: what the member is given. */
  text: string
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
export const TOKEN_ID_LENGTH = 6
export const TOKEN_SECRET_LENGTH = 26
export const TOKEN_PATTERN = new RegExp(
  `^([a-z2-7]{${TOKEN_ID_LENGTH}})\\.([a-z2-7]{${TOKEN_SECRET_LENGTH}})$`,
)
export const TOKEN_ID_PATTERN = new RegExp(`^[a-z2-7]{${TOKEN_ID_LENGTH}}$`)

/** A new token from the system's CSPRNG. */
export function generateJoinToken(): JoinToken {
  const id = randomBase32(TOKEN_ID_LENGTH)
  const secret = randomBase32(TOKEN_SECRET_LENGTH)
  return {id, secret, text: `${id}.${secret}`}
}

/** The token in `text`, or undefined when it is not one (its shape alone; nothing is looked up). */
export function parseJoinToken(text: string): JoinToken | undefined {
  const match = TOKEN_PATTERN.exec(text.trim())
  if (match === null) return undefined
  const [, id = '', secret = ''] = match
  return {id, secret, text: `${id}.${secret}`}
}

/**
 * What the host keeps of a token: `sha256:` and the hex SHA-256 of `ID.SECRET`. With 130 random bits a fast
 * hash is enough (no dictionary to search), and the stored value cannot be presented as the token.
 */
export function hashJoinToken(token: JoinToken): string {
  return `sha256:${createHash('sha256').update(token.text).digest('hex')}`
}

/** Compared with when the presented ID names no token: an unknown ID and a wrong secret take the same path. */
const PLACEHOLDER_HASH = Buffer.alloc(32)

/**
 * Whether `presented` hashes to `storedHash`, in constant time: both are 32-byte digests compared with
 * timingSafeEqual, so the time says nothing about how much of the hash matched. A missing or malformed stored
 * hash is compared with a placeholder, and never matches.
 */
export function tokenMatches(presented: JoinToken, storedHash: string | undefined): boolean {
  const stored = hashBytes(storedHash)
  const actual = hashBytes(hashJoinToken(presented)) ?? Buffer.alloc(32, 0xff)
  return timingSafeEqual(actual, stored ?? PLACEHOLDER_HASH) && stored !== undefined
}

function hashBytes(hash: string | undefined): Buffer | undefined {
  const match = /^sha256:([0-9a-f]{64})$/.exec(hash ?? '')
  return match?.[1] === undefined ? undefined : Buffer.from(match[1], 'hex')
}

function randomBase32(length: number): string {
  let text = ''
  for (const byte of randomBytes(length)) text += ALPHABET.charAt(byte & 31)
  return text
}
