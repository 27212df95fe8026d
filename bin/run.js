#!/usr/bin/env node
import {exitUnlessSupportedNode} from './node-version.js'

exitUnlessSupportedNode()
// Loaded only now: on an older Node.js, oclif and ksctl's dependencies fail while they load.
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
