// The first thing ksctl runs: on a Node.js older than package.json's engines.node, its dependencies fail
// while they load, with errors that do not name the cause (undici: "Cannot read properties of undefined
// (reading 'bind')", after a page of oclif warnings). Plain JavaScript that imports only Node's own modules,
// so that it runs on any Node.js that can start bin/run.js.
import {readFileSync} from 'node:fs'

/** A usage or environment error: `ExitCode.Usage` in src/errors.ts (a unit test keeps the two equal). */
export const unsupportedNodeExitCode = 2

/**
 * @typedef {{major: number, minor: number, patch: number}} Version
 * @typedef {{from: Version, sameMajor: boolean}} Floor one alternative of the range: `^X.Y.Z` or `>=X.Y.Z`
 */

/** @param {string} text @returns {Version | undefined} */
function parseVersion(text) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text)
  if (match === null) return undefined
  return {major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3])}
}

/** @param {Version} a @param {Version} b */
function atLeast(a, b) {
  if (a.major !== b.major) return a.major > b.major
  if (a.minor !== b.minor) return a.minor > b.minor
  return a.patch >= b.patch
}

/** @param {Version} version */
function show(version) {
  return `${version.major}.${version.minor}.${version.patch}`
}

/**
 * Reads the forms of an engines range that ksctl uses: alternatives joined by `||`, each `^X.Y.Z` or
 * `>=X.Y.Z`. Anything else throws, so that a new form in package.json fails the unit test, not a user.
 * @param {string} range
 * @returns {Floor[]}
 */
export function parseNodeRange(range) {
  return range.split('||').map((alternative) => {
    const match = /^\s*(\^|>=)\s*(\d+\.\d+\.\d+)\s*$/.exec(alternative)
    const from = match === null ? undefined : parseVersion(match[2] ?? '')
    if (match === null || from === undefined) {
      throw new Error(`engines.node: cannot read "${alternative.trim()}" in "${range}"`)
    }
    return {from, sameMajor: match[1] === '^'}
  })
}

/**
 * "22.22.2 or a later 22.x, 24.15.0 or a later 24.x, or 26.0.0 and later"
 * @param {Floor[]} floors
 */
export function describeNodeRange(floors) {
  const parts = floors.map(({from, sameMajor}) =>
    sameMajor ? `${show(from)} or a later ${from.major}.x` : `${show(from)} and later`,
  )
  // No Array.prototype.at: this must run on the old Node.js it reports.
  const last = parts[parts.length - 1] ?? ''
  return parts.length === 1 ? last : `${parts.slice(0, -1).join(', ')}, or ${last}`
}

/**
 * What to tell the user when `version` is outside `range`; undefined when it is inside.
 * @param {string} version a Node.js version, `process.versions.node`
 * @param {string} range package.json's engines.node
 * @param {string} execPath the node binary that runs, so that the user sees which one is too old
 * @returns {string | undefined}
 */
export function unsupportedNodeMessage(version, range, execPath) {
  const floors = parseNodeRange(range)
  const running = parseVersion(version)
  const supported =
    running !== undefined &&
    floors.some(({from, sameMajor}) => atLeast(running, from) && (!sameMajor || running.major === from.major))
  if (supported) return undefined
  return (
    `error: ksctl needs Node.js ${describeNodeRange(floors)}; this is Node.js ${version} (${execPath})\n` +
    `  → install a current Node.js LTS release (https://nodejs.org/en/download, or: nvm install --lts), ` +
    `put it first on your PATH, and run the command again\n`
  )
}

/** Exits with {@link unsupportedNodeExitCode} and says what to install, unless this Node.js can run ksctl. */
export function exitUnlessSupportedNode() {
  const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  const message = unsupportedNodeMessage(process.versions.node, packageJson.engines.node, process.execPath)
  if (message === undefined) return
  process.stderr.write(message)
  process.exit(unsupportedNodeExitCode)
}
