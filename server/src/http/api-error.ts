/** The API's error body: `{ error: { code, message } }` with an HTTP status. */
import type { Response } from 'express';

/** Sends `{ error: { code, message } }` with the given status, e.g. `apiError(res, 404, 'unknown-session', 'no session "x"')`. */
export const apiError = (res: Response, status: number, code: string, message: string) => res.status(status).json({ error: { code, message } });
