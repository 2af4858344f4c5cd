// SPDX-License-Identifier: MIT
// Hello world across two agent processes (scenario S2), the printing side: StreamPrinter prints
// every character of a stream on one line and returns how many it printed. Serves until SIGINT
// or SIGTERM.
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

return await new PerperBuilder("StreamPrinterAgent").AddHandlers<StreamPrinterAgent>().RunAsync();

public class StreamPrinterAgent
{
    public static async Task<long> StreamPrinter(PerperStream stream)
    {
        Console.WriteLine("Hello world from StreamPrinterAgent's StreamPrinter!");
        long count = 0;
        await foreach (string c in stream.EnumerateAsync<string>())
        {
            Console.Write(c);
            count++;
        }
        Console.WriteLine();
        return count;
    }
}
