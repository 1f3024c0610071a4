/**
 * Standalone entry of the Loupe debug adapter (dist/debugAdapter.js): DAP on stdin/stdout, or on a TCP port
 * with --server=PORT (DebugSession.run reads that flag). Tests drive this very file.
 */
import { LoupeDebugSession } from './loupeDebugSession';

LoupeDebugSession.run(LoupeDebugSession);
